"""`tongdai prompts build`: Vietnamese voice prompts for Asterisk.

Asterisk ships no Vietnamese sounds. Each text of ``data/prompts-vi.yaml`` is spoken by espeak-ng
(``-v vi``) and converted by sox — silence trimmed, normalised to -3 dBFS — into the formats
Asterisk plays (``.sln16``, ``.alaw``, ``.ulaw`` and an 8 kHz ``.wav``; Asterisk picks the
cheapest to transcode). The ``digits/*`` files that Asterisk's Vietnamese SayNumber/SayDigits
need are generated too.

A human recording in ``prompts/recordings/vi/<name>.<ext>`` replaces the generated prompt of the
same name. Every old format of a name is removed before the new ones are written: Asterisk would
otherwise keep playing whichever old format it prefers.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

FORMATS = ("sln16", "alaw", "ulaw", "wav")
# The texts ship with the package; TONGDAI_PROMPTS names another file.
TEXTS = Path(str(importlib.resources.files("ivr.pbx") / "data" / "prompts-vi.yaml"))


def recordings_dir(routing_path: Path) -> Path:
    """Human recordings live beside the operator's routing.yaml (the repository's prompts/)."""
    return routing_path.resolve().parent / "prompts" / "recordings" / "vi"

# What Asterisk's Vietnamese number rules (say.c, language "vi") play.
_UNITS = ["không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín", "mười",
          "mười một", "mười hai", "mười ba", "mười bốn", "mười lăm", "mười sáu", "mười bảy",
          "mười tám", "mười chín"]
DIGITS = {
    **{str(n): w for n, w in enumerate(_UNITS)},
    "20": "hai mươi", "30": "ba mươi", "40": "bốn mươi", "50": "năm mươi",
    "60": "sáu mươi", "70": "bảy mươi", "80": "tám mươi", "90": "chín mươi",
    "1a": "mốt", "4a": "tư", "5a": "lăm", "odd": "linh",
    "hundred": "trăm", "thousand": "nghìn", "million": "triệu", "billion": "tỷ",
    "0-hundred": "không trăm", "0-hundred-odd": "không trăm linh",  # 2026, 2005: say.c asks for them
    "star": "sao", "pound": "thăng", "minus": "âm",
    # Month names, where Asterisk's date sayings look for them (mon-0 is January): April is
    # "tháng tư", never "tháng bốn".
    **{f"mon-{i}": f"tháng {w}" for i, w in enumerate(
        ["một", "hai", "ba", "tư", "năm", "sáu", "bảy", "tám", "chín", "mười", "mười một", "mười hai"])},
}


@dataclass
class BuildReport:
    generated: list[str]
    recorded: list[str]
    unchanged: int


def texts(path: Path = TEXTS) -> dict[str, str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(isinstance(v, str) and v.strip() for v in data.values()):
        raise ValueError(f"{path}: expected name: text pairs")
    return {str(k): " ".join(v.split()) for k, v in data.items()}


def _run(cmd: list[str]) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {p.stderr.strip()[:500]}")


def convert(src: Path, dest_base: Path, *, trim: bool, peak_db: int = -3) -> None:
    """src (anything sox reads) -> dest_base.{sln16,alaw,ulaw,wav}, replacing old formats."""
    with tempfile.TemporaryDirectory() as tmp:
        norm = Path(tmp) / "norm.wav"
        effects = ["silence", "1", "0.05", "0.5%", "reverse", "silence", "1", "0.05", "0.5%", "reverse"] if trim else []
        _run(["sox", str(src), "-c", "1", str(norm), *effects, "gain", "-n", str(peak_db)])
        for old in dest_base.parent.glob(dest_base.name + ".*"):
            old.unlink()
        dest_base.parent.mkdir(parents=True, exist_ok=True)
        _run(["sox", str(norm), "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw", f"{dest_base}.sln16"])
        _run(["sox", str(norm), "-r", "8000", "-c", "1", "-t", "al", f"{dest_base}.alaw"])
        _run(["sox", str(norm), "-r", "8000", "-c", "1", "-t", "ul", f"{dest_base}.ulaw"])
        _run(["sox", str(norm), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", f"{dest_base}.wav"])


def _beep(dest: Path) -> None:
    if all(Path(f"{dest}.{x}").exists() for x in FORMATS):
        return
    with tempfile.TemporaryDirectory() as tmp:
        tone = Path(tmp) / "beep.wav"
        _run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(tone), "synth", "0.25", "sine", "1000"])
        convert(tone, dest, trim=False)


def build(sounds_dir: Path, *, texts_path: Path = TEXTS, recordings: Path | None = None, force: bool = False) -> BuildReport:
    """Build every prompt into ``sounds_dir`` (the ``sounds/vi`` directory Asterisk reads).

    Prompts go to ``tongdai/<name>``, number words to ``digits/<n>``. A manifest remembers what
    each file was built from, so an unchanged prompt is not rebuilt.
    """
    for tool in ("espeak-ng", "sox"):
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} is not installed (apt-get install espeak-ng sox)")
    wanted = {f"tongdai/{k}": v for k, v in texts(texts_path).items()}
    wanted.update({f"digits/{k}": v for k, v in DIGITS.items()})
    _beep(sounds_dir / "beep")  # the tone before a recording (Asterisk plays "beep")
    manifest_path = sounds_dir / ".tongdai-manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    rec_index: dict[str, Path] = {}
    if recordings is not None and recordings.is_dir():
        for f in recordings.rglob("*"):
            if f.is_file() and f.suffix and f.name != "README.md":
                rel = f.relative_to(recordings).with_suffix("").as_posix()
                rec_index[rel if rel.startswith("digits/") else f"tongdai/{rel}"] = f
    report = BuildReport([], [], 0)
    for name, text in sorted(wanted.items()):
        rec = rec_index.get(name)
        if rec is not None:
            key = "rec:" + hashlib.sha256(rec.read_bytes()).hexdigest()
        else:
            key = "tts:" + hashlib.sha256(text.encode()).hexdigest()
        dest = sounds_dir / name
        if not force and manifest.get(name) == key and all(Path(f"{dest}.{x}").exists() for x in FORMATS):
            report.unchanged += 1
            continue
        if rec is not None:
            convert(rec, dest, trim=False)
            report.recorded.append(name)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / "tts.wav"
                _run(["espeak-ng", "-v", "vi", "-s", "150", "-w", str(raw), text])
                convert(raw, dest, trim=True)
            report.generated.append(name)
        manifest[name] = key
    sounds_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return report


# Hold music (musiconhold.conf's default class), played while the controller is away and to
# callers waiting in a branch's queue: a soft
# arpeggio synthesised by sox, so that no third-party recording has to ship with the project.
# An operator's own music goes into the same directory (any file Asterisk plays).
HOLD_NOTES = (("C4", 0.5), ("E4", 0.5), ("G4", 0.5), ("C5", 0.9), ("A3", 0.5), ("C4", 0.5), ("E4", 0.5), ("A4", 0.9),
              ("F3", 0.5), ("A3", 0.5), ("C4", 0.5), ("F4", 0.9), ("G3", 0.5), ("B3", 0.5), ("D4", 0.5), ("G4", 0.9))
HOLD_MUSIC = "tongdai-hold"


def build_moh(moh_dir: Path) -> bool:
    """Write the hold music into ``moh_dir`` unless it is there; return whether it was written."""
    dest = moh_dir / HOLD_MUSIC
    if all(Path(f"{dest}.{x}").exists() for x in FORMATS):
        return False
    if not shutil.which("sox"):
        raise RuntimeError("sox is not installed (apt-get install sox)")
    with tempfile.TemporaryDirectory() as tmp:
        notes = []
        for i, (note, length) in enumerate(HOLD_NOTES * 2):
            f = Path(tmp) / f"n{i:02d}.wav"
            _run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(f), "synth", str(length), "pluck", note,
                  "fade", "0", str(length), str(length * 0.6)])
            notes.append(str(f))
        tune = Path(tmp) / "tune.wav"
        _run(["sox", *notes, str(tune), "reverb", "30"])
        moh_dir.mkdir(parents=True, exist_ok=True)
        convert(tune, dest, trim=False, peak_db=-12)  # background, below the prompts' -3 dBFS
    return True
