"""Text spoken on demand (a staff answer, an agency's name), cached by content in Asterisk's
sounds directory.

The text is normalised (:mod:`ivr.pbx.vitext`), spoken by espeak-ng with the prompts' voice and
converted by sox into the formats the prompts have (:func:`ivr.pbx.sounds.convert`), under
``<sounds>/tongdai/speech/<hash>.*``, the hash being that of the voice settings and the spoken
text: the same text is synthesised once, a changed answer gets a new file, and nothing ever
needs invalidating. The files appear atomically: a name is :meth:`Speech.ready` only when every
format is in place.

Synthesis is slow (about a second per ten words on a busy machine), so it never runs on a
call's path: the cases service synthesises an answer when it is written, and a call that finds
no file yet starts one in a worker thread and goes on without it (:meth:`Speech.prepare_soon`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

from ivr.pbx import sounds
from ivr.pbx.vitext import normalise

log = logging.getLogger("tongdai.speech")

VOICE = ("espeak-ng", "-v", "vi", "-s", "150")  # the prompts' voice (ivr.pbx.sounds.build)
SUBDIR = "speech"  # under <sounds>/tongdai/
MAX_CHARS = 6000  # an answer longer than this is cut (about six minutes of speech)


def plausible_seconds(text: str) -> tuple[float, float]:
    """How long the spoken ``text`` may last: every Vietnamese word is one syllable, and this
    voice says about four a second (0.25 s each measured, pauses at commas included); a file far
    outside the range is not this text (espeak choked, a truncated write)."""
    n = len(normalise(text)[:MAX_CHARS].split())
    return 0.12 * n, 0.6 * n + 1.0


class Speech:
    """Synthesised speech in ``sounds_dir`` (the ``sounds/vi`` directory Asterisk reads)."""

    def __init__(self, sounds_dir: Path):
        self.sounds_dir = Path(sounds_dir)
        self._pending: dict[str, asyncio.Future] = {}
        self._background: set[asyncio.Future] = set()  # prepare_soon's, kept until done

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def key(text: str) -> str:
        # Cached: normalising a long answer takes milliseconds, and a look-up asks on the
        # controller's event loop, several times a call.
        spoken = normalise(text)[:MAX_CHARS]
        return hashlib.sha256(("\0".join(VOICE) + "\n" + spoken).encode()).hexdigest()[:24]

    def base(self, text: str) -> Path:
        """The files' path without the format's extension."""
        return self.sounds_dir / "tongdai" / SUBDIR / self.key(text)

    def media(self, text: str) -> str:
        """The ARI media URI that plays ``text``."""
        return f"sound:tongdai/{SUBDIR}/{self.key(text)}"

    def wav(self, text: str) -> Path:
        return Path(f"{self.base(text)}.wav")

    def ready(self, text: str) -> str | None:
        """The media URI if ``text`` is synthesised, else None."""
        base = self.base(text)
        return self.media(text) if all(Path(f"{base}.{x}").exists() for x in sounds.FORMATS) else None

    def synthesise(self, text: str) -> Path:
        """Speak ``text`` into the cache (blocking; a no-op when already there). Returns the wav."""
        if self.ready(text):
            return self.wav(text)
        for tool in ("espeak-ng", "sox"):
            if not shutil.which(tool):
                raise RuntimeError(f"{tool} is not installed (apt-get install espeak-ng sox)")
        spoken = normalise(text)[:MAX_CHARS]
        if not spoken.strip():
            raise ValueError("nothing to say")
        base = self.base(text)
        base.parent.mkdir(parents=True, exist_ok=True)
        # Build beside the cache (same file system), then rename each format into place; the
        # wav last, and ready() wants them all: a reader never sees half a set.
        with tempfile.TemporaryDirectory(dir=base.parent, prefix=".build-") as tmp:
            words, raw = Path(tmp) / "text.txt", Path(tmp) / "tts.wav"
            words.write_text(spoken, encoding="utf-8")
            p = subprocess.run([*VOICE, "-f", str(words), "-w", str(raw)], capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"espeak-ng failed: {p.stderr.strip()[:300]}")
            staged = Path(tmp) / base.name
            sounds.convert(raw, staged, trim=True)
            lo, hi = plausible_seconds(text)
            if not lo <= (got := seconds(Path(f"{staged}.wav"))) <= hi:
                raise RuntimeError(f"synthesised {got:.1f} s for {len(spoken.split())} words (expected {lo:.1f}–{hi:.1f} s)")
            for fmt in sorted(sounds.FORMATS, key=lambda f: f == "wav"):
                src = Path(f"{staged}.{fmt}")
                src.chmod(0o644)
                os.replace(src, f"{base}.{fmt}")
        log.info("speech %s: %d characters synthesised (%.1f s)", base.name, len(spoken), seconds(self.wav(text)))
        return self.wav(text)

    async def prepare(self, text: str) -> Path:
        """:meth:`synthesise` in a worker thread; concurrent requests for one text share it."""
        key = self.key(text)
        task = self._pending.get(key)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(self.synthesise, text))
            self._pending[key] = task
            task.add_done_callback(lambda _t: self._pending.pop(key, None))
        return await asyncio.shield(task)

    def prepare_soon(self, text: str) -> None:
        """Start :meth:`prepare` and do not wait (a call that must not wait on synthesis)."""
        if self.ready(text) or self.key(text) in self._pending:
            return

        async def go() -> None:
            try:
                await self.prepare(text)
            except Exception as e:  # noqa: BLE001 - logged; the next look-up tries again
                log.error("speech: synthesis failed: %s", e)

        fut = asyncio.ensure_future(go())
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)


    async def warm(self, texts: list[str]) -> int:
        """Synthesise the texts not in the cache yet, one at a time (a background chore: the
        agencies' names when the controller starts); returns how many were made."""
        made = 0
        for text in dict.fromkeys(t for t in texts if t and t.strip()):
            if self.ready(text):
                continue
            try:
                await self.prepare(text)
                made += 1
            except Exception as e:  # noqa: BLE001 - a look-up tries again later
                log.error("speech: could not synthesise %r: %s", text[:60], e)
        return made


def seconds(wav_path: Path) -> float:
    with wave.open(str(wav_path)) as w:
        return w.getnframes() / float(w.getframerate())
