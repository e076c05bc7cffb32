"""`tongdai prompts build`: every prompt in every format; a human recording replaces the voice."""

from __future__ import annotations

import subprocess
import wave

from ivr.pbx import sounds as prompts


def test_build_generates_all_formats_and_digits(tmp_path):
    texts = tmp_path / "vi.yaml"
    texts.write_text("greeting: Xin chào.\nmenu: Mời bấm phím một.\n", encoding="utf-8")
    out = tmp_path / "sounds" / "vi"
    r = prompts.build(out, texts_path=texts, recordings=tmp_path / "none")
    assert "tongdai/greeting" in r.generated and "digits/5" in r.generated and "digits/4a" in r.generated
    for name in ("tongdai/greeting", "tongdai/menu", "digits/0", "digits/hundred", "beep"):
        for ext in prompts.FORMATS:
            assert (out / f"{name}.{ext}").stat().st_size > 0, (name, ext)
    with wave.open(str(out / "tongdai/menu.wav")) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1 and w.getnframes() > 4000
    # sln16 is 16 kHz, 16-bit: twice the alaw duration in bytes x 2
    assert abs((out / "tongdai/menu.sln16").stat().st_size - 4 * (out / "tongdai/menu.alaw").stat().st_size) < 200
    again = prompts.build(out, texts_path=texts, recordings=tmp_path / "none")
    assert again.generated == [] and again.unchanged == len(r.generated)
    texts.write_text("greeting: Xin chào quý vị.\nmenu: Mời bấm phím một.\n", encoding="utf-8")
    changed = prompts.build(out, texts_path=texts, recordings=tmp_path / "none")
    assert changed.generated == ["tongdai/greeting"]


def test_recording_replaces_the_prompt_and_old_formats_go(tmp_path):
    texts = tmp_path / "vi.yaml"
    texts.write_text("greeting: Xin chào.\n", encoding="utf-8")
    out = tmp_path / "sounds" / "vi"
    rec = tmp_path / "recordings"
    prompts.build(out, texts_path=texts, recordings=rec)
    tts_size = (out / "tongdai/greeting.alaw").stat().st_size
    (out / "tongdai/greeting.gsm").write_bytes(b"old format Asterisk would prefer")
    rec.mkdir()
    # a "human" recording: 2 s at 44.1 kHz stereo, as a phone app would save it
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", str(rec / "greeting.wav"), "synth", "2", "sine", "440"], check=True)
    r = prompts.build(out, texts_path=texts, recordings=rec)
    assert r.recorded == ["tongdai/greeting"]
    assert not (out / "tongdai/greeting.gsm").exists()
    size = (out / "tongdai/greeting.alaw").stat().st_size
    assert size != tts_size and abs(size - 16000) < 400  # 2 s of 8 kHz A-law
