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
    "star": "sao", "pound": "thăng", "minus": "âm",
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


def _convert(src: Path, dest_base: Path, *, trim: bool) -> None:
    """src (anything sox reads) -> dest_base.{sln16,alaw,ulaw,wav}, replacing old formats."""
    with tempfile.TemporaryDirectory() as tmp:
        norm = Path(tmp) / "norm.wav"
        effects = ["silence", "1", "0.05", "0.5%", "reverse", "silence", "1", "0.05", "0.5%", "reverse"] if trim else []
        _run(["sox", str(src), "-c", "1", str(norm), *effects, "gain", "-n", "-3"])
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
        _convert(tone, dest, trim=False)


# Music on hold for the branch queue: generated (sox), so nothing unfree ships. A slow
# arpeggio over three chords, soft, 24 s, looped by Asterisk.
MOH_NAME = "tongdai-hold"
_MOH_CHORDS = (("261.63", "329.63", "392.00"), ("220.00", "261.63", "329.63"),
               ("174.61", "220.00", "261.63"), ("196.00", "246.94", "293.66"))


def build_moh(moh_dir: Path) -> Path:
    """Write the hold music into ``moh_dir`` (musiconhold.conf's ``default`` class) once."""
    dest = moh_dir / MOH_NAME
    if all(Path(f"{dest}.{x}").exists() for x in FORMATS):
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for i, chord in enumerate(_MOH_CHORDS * 2):
            for j, freq in enumerate(chord + (chord[1],)):
                part = Path(tmp) / f"n{i:02d}{j}.wav"
                _run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(part), "synth", "0.75",
                      "sine", freq, "fade", "q", "0.05", "0.75", "0.4", "gain", "-12"])
                parts.append(str(part))
        music = Path(tmp) / "moh.wav"
        _run(["sox", *parts, str(music)])
        _convert(music, dest, trim=False)
    return dest


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
            _convert(rec, dest, trim=False)
            report.recorded.append(name)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / "tts.wav"
                _run(["espeak-ng", "-v", "vi", "-s", "150", "-w", str(raw), text])
                _convert(raw, dest, trim=True)
            report.generated.append(name)
        manifest[name] = key
    sounds_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return report
