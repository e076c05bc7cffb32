"""Every vocabulary of the project, defined once, with what staff read in Vietnamese.

The database stores the English value; the CLI, the reports and the console show ``.label``.
The models (CHECK constraints), the routing check, the CLI's choices, the exports and the
report all take their lists from here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Vocabulary(enum.StrEnum):
    """A closed list of values, each with its Vietnamese label."""

    label: str

    def __new__(cls, value: str, label: str) -> Vocabulary:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.label = label
        return obj

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)

    @classmethod
    def labels(cls) -> dict[str, str]:
        return {m.value: m.label for m in cls}


class Disposition(Vocabulary):
    """How a call ended (calls.disposition)."""

    ANSWERED = "answered", "được trả lời"
    NO_ANSWER = "no_answer", "không ai nghe máy"
    BUSY = "busy", "máy bận"
    ABANDONED = "abandoned", "người gọi bỏ máy"
    INVALID_INPUT = "invalid_input", "bấm phím không hợp lệ"
    CLOSED = "closed", "ngoài giờ làm việc"
    COMPLAINT = "complaint", "phản ánh sách nhiễu (phím 9)"
    REJECTED = "rejected", "bị từ chối"
    FAILED = "failed", "lỗi hệ thống"
    INTERRUPTED = "interrupted", "bị gián đoạn"
    CASE_LOOKUP = "case_lookup", "tra cứu kết quả phản ánh"
    # Reached Asterisk while no controller took calls (a crash, a restart) and was never served:
    # held and gave up, or heard the apology. Logged from Asterisk's own record (CEL).
    CONTROLLER_UNAVAILABLE = "controller_unavailable", "hệ thống gián đoạn, chưa được phục vụ"
    # A callback to a citizen who asked for it while waiting in a branch's queue (an outbound
    # call row of its own, linked to the call that asked: calls.callback_of).
    CALLBACK_ANSWERED = "callback_answered", "gọi lại: công dân đã nghe máy"
    CALLBACK_NO_ANSWER = "callback_no_answer", "gọi lại: công dân không nghe máy"
    CALLBACK_FAILED = "callback_failed", "gọi lại: không thực hiện được"
    IN_PROGRESS = "in_progress", "đang diễn ra"


class CallbackStatus(Vocabulary):
    """Where a callback request is (callback_requests.status)."""

    PENDING = "pending", "chờ gọi lại"
    SERVING = "serving", "đang gọi lại"
    DONE = "done", "đã gọi lại được"
    FAILED = "failed", "gọi lại không được"
    EXPIRED = "expired", "quá hạn"


class CaseStatus(Vocabulary):
    RECEIVED = "received", "mới tiếp nhận"
    CLASSIFIED = "classified", "đã phân loại"
    ASSIGNED = "assigned", "đã giao"
    IN_PROGRESS = "in_progress", "đang xử lý"
    ANSWERED = "answered", "đã trả lời"
    CLOSED = "closed", "đã đóng"
    REOPENED = "reopened", "mở lại"


class PublicStatus(Vocabulary):
    """What a citizen is told of a case's status (phone, Zalo, the public page): four words,
    not the seven internal steps."""

    RECEIVED = "received", "đã tiếp nhận"
    IN_PROGRESS = "in_progress", "đang xử lý"
    ANSWERED = "answered", "đã trả lời"
    CLOSED = "closed", "đã đóng"

    @classmethod
    def of(cls, status: str) -> PublicStatus:
        """The public word for a CaseStatus value."""
        return _PUBLIC[status]  # a StrEnum member and its value are the same key


OPEN_STATUSES: tuple[str, ...] = (CaseStatus.RECEIVED, CaseStatus.CLASSIFIED, CaseStatus.ASSIGNED,
                                  CaseStatus.IN_PROGRESS, CaseStatus.REOPENED)


_PUBLIC: dict[str, PublicStatus] = {
    CaseStatus.RECEIVED: PublicStatus.RECEIVED, CaseStatus.CLASSIFIED: PublicStatus.RECEIVED,
    CaseStatus.ASSIGNED: PublicStatus.IN_PROGRESS, CaseStatus.IN_PROGRESS: PublicStatus.IN_PROGRESS,
    CaseStatus.REOPENED: PublicStatus.IN_PROGRESS, CaseStatus.ANSWERED: PublicStatus.ANSWERED,
    CaseStatus.CLOSED: PublicStatus.CLOSED,
}


class Category(Vocabulary):
    """What a complaint is about; each has its deadline in working days (routing.yaml)."""

    PROCEDURE = "procedure", "thủ tục hành chính"
    REGULATION = "regulation", "quy định"
    MISCONDUCT = "misconduct", "sách nhiễu, vòi vĩnh"
    QUESTION = "question", "hỏi đáp"
    OTHER = "other", "khác"


class CloseReason(Vocabulary):
    RESOLVED = "resolved", "đã giải quyết"
    TRANSFERRED = "transferred", "đã chuyển cơ quan khác"
    DUPLICATE = "duplicate", "trùng lặp"
    INVALID = "invalid", "không hợp lệ"
    NO_FURTHER_ACTION = "no_further_action", "không cần xử lý thêm"


class Channel(Vocabulary):
    """How a complaint reached the hotline."""

    PHONE = "phone", "điện thoại"
    ZALO = "zalo", "Zalo"
    WEB = "web", "trang web"


class DeskKind(Vocabulary):
    """Kinds of agency (routing.yaml ``kind``) that run a one-stop desk (bộ phận tiếp nhận và trả
    kết quả), where Youth Union volunteers serve."""

    CENTER = "center", "Trung tâm Phục vụ hành chính công"
    DISTRICT = "district", "bộ phận một cửa cấp huyện"
    COMMUNE = "commune", "bộ phận một cửa cấp xã"


class AssistKind(Vocabulary):
    """What a volunteer helped one person with (one assist = one person helped)."""

    GUIDANCE = "guidance", "hướng dẫn thủ tục"
    FORM_FILLING = "form_filling", "hỗ trợ kê khai hồ sơ"
    ONLINE_SUBMISSION = "online_submission", "hỗ trợ nộp hồ sơ trực tuyến"
    VNEID = "vneid", "hỗ trợ VNeID"
    OTHER = "other", "hỗ trợ khác"


class ShiftState(Vocabulary):
    """Where a volunteer's shift stands; derived from the plan, check-in, check-out and the time."""

    PLANNED = "planned", "đã lên lịch"
    ON_DUTY = "on_duty", "đang trực"
    SERVED = "served", "đã trực"
    NO_CHECKOUT = "no_checkout", "thiếu giờ ra"
    ABSENT = "absent", "không đến"


class Role(Vocabulary):
    """What a staff account of the console may do (users.role); the matrix is ivr.web.access."""

    OFFICER = "officer", "cán bộ đầu mối"  # a focal point of one agency
    SUPERVISOR = "supervisor", "Sở Nội vụ / tổ vận hành"
    INSPECTOR = "inspector", "Tổ Kiểm tra đột xuất"
    OPERATOR = "operator", "vận hành tổng đài"  # PBX staff: live board, desk phones; no case content
    # Youth Union coordinators: the volunteers' roster, check-in/out, assists; no case content.
    YOUTH = "youth", "Đoàn Thanh niên (điều phối tình nguyện viên)"


class LoginResult(Vocabulary):
    """How a sign-in try ended (login_attempts.result)."""

    OK = "ok", "đăng nhập được"
    BAD_PASSWORD = "bad_password", "sai mật khẩu hoặc tên đăng nhập"
    LOCKED = "locked", "tài khoản đang tạm khoá"
    ADDRESS_LIMITED = "address_limited", "địa chỉ đăng nhập sai quá nhiều"
    DISABLED = "disabled", "tài khoản đã bị khoá"


@dataclass(frozen=True)
class MenuAction:
    """Where the menu (or a branch nobody answered) sends the caller: ``branch:<digit>``,
    ``complaint``, ``hangup`` or ``misconduct``, as written in routing.yaml, or ``lookup`` (the
    caller follows a case: menu.lookup_digit)."""

    kind: str
    digit: str | None = None

    KINDS = ("branch", "complaint", "hangup", "misconduct", "lookup")

    @classmethod
    def parse(cls, text: str) -> MenuAction:
        kind, _, digit = str(text).partition(":")
        if kind not in cls.KINDS or (kind == "branch") != bool(digit):
            raise ValueError(f"not a menu action: {text!r}")
        return cls(kind, digit or None)

    def __str__(self) -> str:
        return f"branch:{self.digit}" if self.kind == "branch" else self.kind
