"""The Zalo HTTP API client and the meaning of Zalo's error codes.

Every Zalo API answers HTTP 200 with ``{"error": <int>, "message": ..., "data": ...}``;
``error == 0`` is success, anything else is an application error carried by a 200, so the body
is always checked.

Endpoints used (base URLs are settings, so tests point them at a local fake server):

- Customer-service ("tư vấn") message to a user id:
  ``POST {api}/v3.0/oa/message/cs``, header ``access_token``, JSON
  ``{"recipient": {"user_id": ...}, "message": {"text": ...}}``, text at most 2000 characters.
  https://developers.zalo.me/docs/official-account/tin-nhan/tin-tu-van/gui-tin-tu-van-dang-van-ban
- ZNS template message to a phone number (now "ZBS Template Message", same wire format):
  ``POST {zns}/message/template``, header ``access_token``, JSON ``phone`` (84…), ``template_id``,
  ``template_data``, ``tracking_id`` (ours, max 48 characters).
  https://developers.zalo.me/docs/zalo-notification-service/gui-tin-zns/gui-zns
- Access-token refresh: ``POST {oauth}/v4/oa/access_token``, header ``secret_key`` (the app
  secret), form ``refresh_token``, ``app_id``, ``grant_type=refresh_token``; the answer has
  ``access_token``, ``refresh_token`` and ``expires_in`` (seconds, a string: "90000" = 25 h).
  https://developers.zalo.me/docs/official-account/bat-dau/xac-thuc-va-uy-quyen-cho-ung-dung-new

Error codes: the OA API appendix "mã lỗi"
(https://developers.zalo.me/docs/official-account/phu-luc/ma-loi) and the ZNS table
(https://zalo.cloud/zns/guidelines/handle-error-code); the tables below keep the codes this
service meets, with the reason staff read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger("tongdai.zalo.api")

TEXT_LIMIT = 2000  # characters of one customer-service text message

# What to do with an error code. "token": refresh the access token and try again at once;
# "retry": a passing condition, try later with backoff; "night": refused because of the hour,
# try again when the quiet hours end; anything else is final for this message.
TOKEN_ERRORS = {
    -216: "access token không hợp lệ",  # OA: Access token is invalid
    -220: "access token đã hết hạn",  # OA: access_token is expired or removed
    -124: "access token không hợp lệ",  # ZNS: Access token invalid
}
RETRY_ERRORS = {
    -32: "vượt giới hạn số lần gọi API của Zalo",  # OA: app / OA reached limit call api (rate limit)
    -100: "lỗi không xác định phía Zalo",  # ZNS: Unknown error, retry later
    -144: "OA đã hết hạn mức gửi ZNS trong ngày",  # ZNS: daily sending limit
}
NIGHT_ERRORS = {
    -234: "Zalo không cho gửi loại tin này ban đêm (22:00–06:00)",  # OA
    -133: "Zalo không cho gửi ZNS ban đêm (22:00–06:00)",  # ZNS
}
FINAL_ERRORS = {
    -201: "tham số không hợp lệ",
    -204: "OA đã bị vô hiệu hoá",
    -205: "OA không tồn tại",
    -211: "OA đã hết hạn mức sử dụng tính năng",
    -213: "người dân chưa quan tâm (follow) OA",
    -217: "người dân đã chặn OA",
    -218: "người nhận đã vượt hạn mức nhận tin",
    -223: "OA chưa cấp quyền cho ứng dụng gọi API này",
    -227: "tài khoản Zalo của người dân bị khoá hoặc không hoạt động quá 45 ngày",
    -230: "người dân không tương tác với OA trong 7 ngày qua: hết thời hạn gửi tin tư vấn",
    -232: "người dân chưa tương tác với OA hoặc lần tương tác cuối đã hết hạn",
    -233: "loại tin không hợp lệ hoặc không được hỗ trợ",
    -244: "người dân đã chặn loại tin này từ OA",
    -108: "số điện thoại không hợp lệ",
    -109: "mã mẫu ZNS không hợp lệ",
    -114: "người dân không nhận được ZNS (trạng thái tài khoản, tuỳ chọn nhận ZNS hoặc phiên bản Zalo cũ)",
    -115: "tài khoản ZNS không đủ số dư",
    -117: "OA hoặc ứng dụng không có quyền dùng mẫu ZNS này",
    -118: "tài khoản Zalo không tồn tại hoặc đã bị vô hiệu hoá",
    -119: "tài khoản không nhận được tin",
    -131: "mẫu ZNS chưa được duyệt",
    -139: "người dân đã từ chối nhận loại ZNS này",
    -141: "người dân đã từ chối nhận ZNS từ OA này",
}


def classify(code: int) -> str:
    """``ok``, ``token``, ``retry``, ``night`` or ``final`` (an unknown code is final: a message is
    never retried forever on an error nobody understands; the reason keeps the code)."""
    if code == 0:
        return "ok"
    if code in TOKEN_ERRORS:
        return "token"
    if code in RETRY_ERRORS:
        return "retry"
    if code in NIGHT_ERRORS:
        return "night"
    return "final"


def reason(code: int, message: str | None = None) -> str:
    """Why a message waits or failed, for staff (Vietnamese), with Zalo's code and message."""
    text = TOKEN_ERRORS.get(code) or RETRY_ERRORS.get(code) or NIGHT_ERRORS.get(code) or FINAL_ERRORS.get(code)
    text = text or "Zalo từ chối"
    return f"{text} (Zalo {code}" + (f": {message}" if message else "") + ")"


@dataclass(frozen=True)
class Result:
    """What Zalo answered. ``error`` is Zalo's code; network and HTTP failures use ``transport``."""

    error: int
    message: str = ""
    data: dict = field(default_factory=dict)
    transport: str | None = None  # set when there was no usable Zalo answer at all

    @property
    def ok(self) -> bool:
        return self.transport is None and self.error == 0

    @property
    def kind(self) -> str:
        return "retry" if self.transport else classify(self.error)

    @property
    def reason(self) -> str:
        if self.transport:
            return f"không kết nối được Zalo ({self.transport})"
        return reason(self.error, self.message)


class ZaloApi:
    """Thin async client. The access token is passed per call: :mod:`.tokens` owns it."""

    def __init__(self, session: aiohttp.ClientSession, *, api_url: str, zns_url: str, oauth_url: str,
                 app_id: str, app_secret: str, timeout: float = 15):
        self.session = session
        self.api_url = api_url
        self.zns_url = zns_url
        self.oauth_url = oauth_url
        self.app_id = app_id
        self._app_secret = app_secret
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    @classmethod
    def from_settings(cls, session: aiohttp.ClientSession, z) -> ZaloApi:
        return cls(session, api_url=z.api_url, zns_url=z.zns_url, oauth_url=z.oauth_url, app_id=z.app_id,
                   app_secret=z.app_secret)

    async def _post_json(self, url: str, token: str, body: dict) -> Result:
        try:
            async with self.session.post(url, json=body, headers={"access_token": token}, timeout=self.timeout) as r:
                raw = await r.read()
                if r.status != 200:  # not Zalo's envelope: a proxy, an outage; retried with backoff
                    return Result(error=0, transport=f"HTTP {r.status}")
        except (aiohttp.ClientError, TimeoutError) as e:
            return Result(error=0, transport=e.__class__.__name__)
        return _parse(raw)

    async def send_text(self, token: str, user_id: str, text: str) -> Result:
        return await self._post_json(f"{self.api_url}/v3.0/oa/message/cs", token,
                                     {"recipient": {"user_id": user_id}, "message": {"text": text}})

    async def send_zns(self, token: str, phone: str, template_id: str, data: dict, tracking_id: str) -> Result:
        return await self._post_json(f"{self.zns_url}/message/template", token,
                                     {"phone": phone, "template_id": template_id, "template_data": data,
                                      "tracking_id": tracking_id[:48]})

    async def refresh(self, refresh_token: str) -> dict:
        """Exchange the refresh token for a new pair. Raises :class:`TokenError` on refusal.

        Returns ``{"access_token", "refresh_token", "expires_in"}``. The refresh token given is
        dead once this succeeds: the caller must store the new pair before anything else.
        """
        form = {"refresh_token": refresh_token, "app_id": self.app_id, "grant_type": "refresh_token"}
        try:
            async with self.session.post(f"{self.oauth_url}/v4/oa/access_token", data=form,
                                         headers={"secret_key": self._app_secret}, timeout=self.timeout) as r:
                raw = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TokenError(f"không kết nối được máy chủ xác thực Zalo ({e.__class__.__name__})", retryable=True) from None
        if status != 200:
            raise TokenError(f"máy chủ xác thực Zalo trả HTTP {status}", retryable=status >= 500)
        try:
            body = json.loads(raw)
        except ValueError:
            raise TokenError("máy chủ xác thực Zalo trả dữ liệu không đọc được", retryable=True) from None
        if not isinstance(body, dict) or not body.get("access_token") or not body.get("refresh_token"):
            err = body.get("error") if isinstance(body, dict) else None
            name = body.get("error_name") or body.get("message") if isinstance(body, dict) else None
            # Never log the body: a partial answer may still carry a token.
            raise TokenError(f"Zalo từ chối làm mới access token (mã {err}: {name}); "
                             "quản trị viên OA cần cấp quyền lại cho ứng dụng", retryable=False)
        try:
            expires_in = int(body.get("expires_in") or 90000)
        except (TypeError, ValueError):
            expires_in = 90000
        return {"access_token": str(body["access_token"]), "refresh_token": str(body["refresh_token"]),
                "expires_in": expires_in}


class TokenError(Exception):
    """The access token could not be obtained; the message is for staff (Vietnamese)."""

    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


def _parse(raw: bytes) -> Result:
    try:
        body: Any = json.loads(raw)
    except ValueError:
        return Result(error=0, transport="câu trả lời không phải JSON")
    if not isinstance(body, dict) or "error" not in body:
        return Result(error=0, transport="câu trả lời không đúng dạng")
    try:
        code = int(body["error"])
    except (TypeError, ValueError):
        return Result(error=0, transport="mã lỗi không đọc được")
    data = got if isinstance(got := body.get("data"), dict) else {}
    return Result(error=code, message=str(body.get("message") or ""), data=data)
