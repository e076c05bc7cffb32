"""Vietnamese written text → what is read aloud, for the voice that speaks staff's answers.

espeak-ng reads letters and words; an answer written by an officer has abbreviations
(``UBND``, ``TTHC``, ``QĐ-UBND``), dates (``15/12/2026``), times (``7h30``), amounts
(``1.500.000 đồng``), percentages, document numbers (``số 12/2026/NĐ-CP``) and phone numbers.
:func:`normalise` writes them out in words, in a fixed order of passes: document references,
dates, times, amounts and units, then every remaining number, then the abbreviations.

Numbers are read by the ``vietnam-number`` package (``n2w``) with two fixes: it reads a zero
tens digit as ``lẽ`` (a misspelling of ``lẻ``; ``linh`` is the written standard and what
Asterisk's Vietnamese number rules say), and it drops any non-digit silently (``12.5`` →
"một trăm hai mươi lăm"), so it is only ever given plain digit runs without a leading zero.
"""

from __future__ import annotations

import re
import unicodedata

from vietnam_number import n2w

# ------------------------------------------------------------------------------ abbreviations
#
# Common in answers to administrative complaints. Keys are matched as whole tokens, case as
# written; the longest first (so "GCNQSDĐ" wins over "GCN").
ABBREVIATIONS: dict[str, str] = {
    "UBND": "Ủy ban nhân dân",
    "HĐND": "Hội đồng nhân dân",
    "UBMTTQVN": "Ủy ban Mặt trận Tổ quốc Việt Nam",
    "MTTQ": "Mặt trận Tổ quốc",
    "CCHC": "cải cách hành chính",
    "TTHC": "thủ tục hành chính",
    "PAKN": "phản ánh, kiến nghị",
    "DVC": "dịch vụ công",
    "DVCTT": "dịch vụ công trực tuyến",
    "HCC": "hành chính công",
    "TTPVHCC": "Trung tâm Phục vụ hành chính công",
    "CSDL": "cơ sở dữ liệu",
    "CNTT": "công nghệ thông tin",
    "CBCCVC": "cán bộ, công chức, viên chức",
    "CBCC": "cán bộ, công chức",
    "GCN": "giấy chứng nhận",
    "QSDĐ": "quyền sử dụng đất",
    "GCNQSDĐ": "giấy chứng nhận quyền sử dụng đất",
    "GPXD": "giấy phép xây dựng",
    "ĐKKD": "đăng ký kinh doanh",
    "CCCD": "căn cước công dân",
    "CMND": "chứng minh nhân dân",
    "BHXH": "bảo hiểm xã hội",
    "BHYT": "bảo hiểm y tế",
    "MST": "mã số thuế",
    "SĐT": "số điện thoại",
    "VP": "Văn phòng",
    "VPĐKĐĐ": "Văn phòng đăng ký đất đai",
    "TN&MT": "Tài nguyên và Môi trường",
    "TNMT": "Tài nguyên và Môi trường",
    "KH&ĐT": "Kế hoạch và Đầu tư",
    "KHĐT": "Kế hoạch và Đầu tư",
    "GD&ĐT": "Giáo dục và Đào tạo",
    "GDĐT": "Giáo dục và Đào tạo",
    "LĐ-TB&XH": "Lao động - Thương binh và Xã hội",
    "LĐTBXH": "Lao động - Thương binh và Xã hội",
    "TT&TT": "Thông tin và Truyền thông",
    "TTTT": "Thông tin và Truyền thông",
    "NN&PTNT": "Nông nghiệp và Phát triển nông thôn",
    "KH&CN": "Khoa học và Công nghệ",
    "VH-TT&DL": "Văn hóa, Thể thao và Du lịch",
    "VHTTDL": "Văn hóa, Thể thao và Du lịch",
    "GTVT": "Giao thông vận tải",
    "XD": "Xây dựng",
    "TP.HCM": "Thành phố Hồ Chí Minh",
    "TP. HCM": "Thành phố Hồ Chí Minh",
    "TP.": "thành phố",
    "TP": "thành phố",
    "TX.": "thị xã",
    "TX": "thị xã",
    "NĐ": "nghị định",
    "QĐ": "quyết định",
    "NQ": "nghị quyết",
    "CV": "công văn",
    "CP": "Chính phủ",
    "CTCP": "công ty cổ phần",
    "Công ty CP": "Công ty cổ phần",
    "TNHH": "trách nhiệm hữu hạn",
    "TTg": "Thủ tướng Chính phủ",
    "BTC": "Bộ Tài chính",
    "BNV": "Bộ Nội vụ",
    "BTP": "Bộ Tư pháp",
    "THCS": "trung học cơ sở",
    "THPT": "trung học phổ thông",
    "v/v": "về việc",
    "V/v": "về việc",
}
# Document types that open a reference code ("QĐ-UBND": a decision of the People's Committee).
DOC_TYPES = {"QĐ", "NĐ", "TT", "NQ", "CV", "KH", "BC", "TB", "CT", "HD", "TTr"}
# Issuers as named in a reference code, when they differ from the abbreviation table.
ISSUERS = {"CP": "Chính phủ", "TTg": "Thủ tướng Chính phủ", "UBND": "Ủy ban nhân dân",
           "HĐND": "Hội đồng nhân dân", "BTC": "Bộ Tài chính", "BNV": "Bộ Nội vụ", "BTP": "Bộ Tư pháp",
           "VPCP": "Văn phòng Chính phủ", "STNMT": "Sở Tài nguyên và Môi trường", "SNV": "Sở Nội vụ"}

_L = r"0-9A-Za-zÀ-ỹĐđ"  # letters and digits, Vietnamese included: what a token is made of
_ABBR = re.compile(
    rf"(?<![{_L}&])(" + "|".join(re.escape(k) for k in sorted(ABBREVIATIONS, key=len, reverse=True)) + rf")(?![{_L}&])"
)

# ---------------------------------------------------------------------------------- numbers

_UNITS = ["không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín"]
MONTHS = {1: "một", 2: "hai", 3: "ba", 4: "tư", 5: "năm", 6: "sáu", 7: "bảy", 8: "tám", 9: "chín",
          10: "mười", 11: "mười một", 12: "mười hai"}


def number(digits: str) -> str:
    """A whole number in words: ``2026`` → "hai nghìn không trăm hai mươi sáu"."""
    digits = digits.lstrip("0") or "0"
    if len(digits) > 15:
        return spell(digits)  # beyond what n2w reads; a long run is a code anyway
    words = n2w(digits)
    return re.sub(r"\blẽ\b", "linh", words)


# The names of the letters, as a Vietnamese reader spells a code (H24 → "hát hai bốn").
LETTERS = {"A": "a", "B": "bê", "C": "xê", "D": "dê", "Đ": "đê", "E": "e", "F": "ép", "G": "giê", "H": "hát",
           "I": "i", "J": "gi", "K": "ca", "L": "e lờ", "M": "em mờ", "N": "en nờ", "O": "o", "P": "pê",
           "Q": "quy", "R": "e rờ", "S": "ét", "T": "tê", "U": "u", "V": "vê", "W": "vê kép", "X": "ích",
           "Y": "i dài", "Z": "dét"}


def spell(code: str) -> str:
    """Character by character: a phone number, a case code, a file code (``H24-0001``); a dot
    or a dash is a short pause."""
    words: list[str] = []
    for ch in code:
        if ch.isdigit():
            words.append(_UNITS[int(ch)])
        elif ch.upper() in LETTERS:
            words.append(LETTERS[ch.upper()])
        elif ch in ".-" and words and not words[-1].endswith(","):
            words[-1] += ","
    return " ".join(words).rstrip(",")


def month(m: int) -> str:
    return MONTHS[m]


def date(d: int, m: int, y: int | None = None) -> str:
    return f"ngày {number(str(d))} tháng {month(m)}" + (f" năm {number(str(y))}" if y else "")


def _valid_date(d: int, m: int) -> bool:
    return 1 <= d <= 31 and 1 <= m <= 12


# ------------------------------------------------------------------------------------ passes


def _doc_ref(m: re.Match) -> str:
    """``12/2026/NĐ-CP`` → "mười hai năm hai nghìn … của Chính phủ"."""
    n, year, code = m.group("n"), m.group("year"), m.group("code")
    parts = code.split("-")
    issuer_parts = parts[1:] if parts[0] in DOC_TYPES and len(parts) > 1 else parts
    issuer = ISSUERS.get(issuer_parts[0]) or ABBREVIATIONS.get(issuer_parts[0])
    out = number(n) + (f" năm {number(year)}" if year else "")
    return out + (f" của {issuer}" if issuer else "")


_DOC_REF = re.compile(r"(?<![\d/])(?P<n>\d{1,5})(?:/(?P<year>(?:19|20)\d\d))?/(?P<code>[A-ZĐ][A-Za-zĐđ&]*(?:-[A-ZĐ][A-Za-zĐđ&]*)*)")
# "số 15/2026": a number of that year; "12/2026" otherwise: a month.
_NUM_YEAR = re.compile(r"(?<![\d/.,])(?P<so>số\s+)?(?P<n>\d{1,5})/(?P<y>(?:19|20)\d\d)(?![\d/])", re.IGNORECASE)
_DATE3 = re.compile(r"(?<![\d/.,])(?P<ngay>ngày\s+)?(?P<d>\d{1,2})[/.-](?P<m>\d{1,2})[/.-](?P<y>(?:19|20)\d\d)(?![\d/])",
                    re.IGNORECASE)
_DATE2 = re.compile(r"(?<![\d/.,])(?P<ngay>ngày\s+)?(?P<d>\d{1,2})/(?P<m>\d{1,2})(?![\d/])", re.IGNORECASE)
_MONTH_YEAR = re.compile(r"\btháng\s+(?P<m>\d{1,2})[/-](?P<y>(?:19|20)\d\d)(?![\d/])", re.IGNORECASE)
_MONTH = re.compile(r"\b(?P<w>tháng)\s+(?P<m>\d{1,2})(?![\d/,.])", re.IGNORECASE)
_TIME = re.compile(rf"(?<![\d,.])(?P<h>\d{{1,2}})\s*(?:h|giờ|:|g)\s*(?P<min>\d{{2}})?(?:\s*(?:phút|p)(?![{_L}]))?(?![\d{_L}])")
_ORDINAL = re.compile(r"\b(?P<w>thứ)\s+(?P<n>[14])(?!\d)", re.IGNORECASE)
_RANGE = re.compile(r"(?<=[\dh])\s*[-–]\s*(?=\d)")
_PERCENT = re.compile(r"(?P<n>\d[\d.]*(?:,\d+)?)\s*%")
_MONEY = re.compile(rf"(?P<n>\d[\d.]*(?:,\d+)?)\s*(?:đồng|đ|VNĐ|VND)(?![{_L}])")
_UNIT_WORDS = [(re.compile(rf"(?<=\d)\s*(?:m2|m²)(?![{_L}])"), " mét vuông"),
               (re.compile(rf"(?<=\d)\s*km(?![{_L}])"), " ki lô mét"),
               (re.compile(rf"(?<=\d)\s*ha(?![{_L}])"), " héc ta"),
               (re.compile(rf"(?<=\d)\s*kg(?![{_L}])"), " ki lô gam")]
# A number after one of these words is read digit by digit (a phone number, a code).
# A code may mix capitals, digits, dots and dashes (no spaces); a phone number may have spaces.
_SPELL_AFTER = re.compile(r"\b(?P<w>mã(?: số)?(?: phản ánh| hồ sơ)?|số điện thoại|SĐT|điện thoại|số máy|hotline|đường dây nóng)"
                          r"(?P<sep>:?\s*)(?P<n>\d{2,}(?: \d{2,})+|(?=[\dA-Z.\-]*\d)[\dA-Z][\dA-Z.\-]*[\dA-Z]|\d)(?![\w])")
_NUMBER = re.compile(rf"(?<![{_L}])(?P<n>\d{{1,3}}(?:\.\d{{3}})+|\d+)(?:,(?P<frac>\d+))?(?![{_L}])")
_MIXED = re.compile(r"(?<=\d)(?=[A-Za-zÀ-ỹĐđ])|(?<=[A-Za-zÀ-ỹĐđ])(?=\d)")


def _amount(raw: str) -> str:
    """``1.500.000`` (dots group thousands) or ``2,5`` (comma is the decimal point)."""
    whole, _, frac = raw.partition(",")
    whole = whole.replace(".", "")
    out = number(whole)
    if frac:
        out += " phẩy " + (spell(frac) if frac.startswith("0") else number(frac))
    return out


def _plain_number(m: re.Match) -> str:
    n, frac = m.group("n"), m.group("frac")
    if "." not in n and len(n) > 1 and n.startswith("0"):
        return spell(n) + ((" phẩy " + spell(frac)) if frac else "")  # 0293…: a phone number
    return _amount(n + (f",{frac}" if frac else ""))


def _date3(m: re.Match) -> str:
    d, mo, y = int(m["d"]), int(m["m"]), int(m["y"])
    return date(d, mo, y) if _valid_date(d, mo) else m.group(0)


def _date2(m: re.Match) -> str:
    d, mo = int(m["d"]), int(m["m"])
    return date(d, mo) if _valid_date(d, mo) else m.group(0)


def _num_year(m: re.Match) -> str:
    n, y = m["n"], m["y"]
    if m["so"]:
        return f"{m['so']}{number(n)} năm {number(y)}"
    return f"tháng {month(int(n))} năm {number(y)}" if 1 <= int(n) <= 12 else m.group(0)


def _time(m: re.Match) -> str:
    h, mins = int(m["h"]), m["min"]
    if h > 24 or (mins is not None and int(mins) > 59):
        return m.group(0)
    out = f"{number(str(h))} giờ"
    if mins and int(mins):
        out += f" {number(mins)} phút"
    return out


def normalise(text: str) -> str:
    """``text`` as it should be read aloud, in words."""
    t = unicodedata.normalize("NFC", text)
    t = re.sub(r"\s+", " ", t).strip()
    t = _DOC_REF.sub(_doc_ref, t)
    t = _DATE3.sub(_date3, t)
    t = _MONTH_YEAR.sub(lambda m: f"tháng {month(int(m['m']))} năm {number(m['y'])}"
                        if 1 <= int(m["m"]) <= 12 else m.group(0), t)
    t = _NUM_YEAR.sub(_num_year, t)
    t = _DATE2.sub(_date2, t)
    t = _MONTH.sub(lambda m: f"{m['w']} {month(int(m['m']))}" if 1 <= int(m["m"]) <= 12 else m.group(0), t)
    t = _ORDINAL.sub(lambda m: f"{m['w']} " + ("nhất" if m["n"] == "1" else "tư"), t)
    t = _SPELL_AFTER.sub(lambda m: f"{m['w']}{m['sep']}{spell(m['n'])}", t)
    t = _RANGE.sub(" đến ", t)
    t = _TIME.sub(_time, t)
    t = _PERCENT.sub(lambda m: f"{_amount(m['n'])} phần trăm", t)
    t = _MONEY.sub(lambda m: f"{_amount(m['n'])} đồng", t)
    for pattern, words in _UNIT_WORDS:
        t = pattern.sub(words, t)
    t = _ABBR.sub(lambda m: ABBREVIATIONS[m.group(1)], t)
    t = _MIXED.sub(" ", t)  # "H24" → "H 24": a letter and a number are read apart
    t = _NUMBER.sub(_plain_number, t)
    t = t.replace("&", " và ").replace("%", " phần trăm")
    t = re.sub(r"\b(ông|bà|Ông|Bà)/(ông|bà|Ông|Bà)\b", r"\1, \2", t)
    t = re.sub(r"\s*[()]\s*", ", ", t)
    t = re.sub(r"\s+[-–]\s+", ", ", t)
    t = re.sub(r"\s*/\s*", " ", t)
    t = re.sub(r"\s+([,.;:!?])", r"\1", t)
    t = re.sub(r",\s*(?=[,.;:!?])", "", t)
    return re.sub(r"\s+", " ", t).strip(" ,")
