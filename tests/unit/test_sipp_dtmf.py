"""write_dtmf_pcap: parse the pcap back and check the RTP stream it describes.

The parser below is independent of ivr.sipp on purpose: it reads the
libpcap/Ethernet/IPv4/UDP/RTP layers from the bytes, as SIPp would.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from itertools import groupby

import pytest

from ivr.pbx.sipp import write_dtmf_pcap

EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}


@dataclass
class Packet:
    time_us: int  # pcap timestamp
    pt: int
    marker: bool
    seq: int
    ts: int
    ssrc: int
    payload: bytes

    @property
    def is_event(self) -> bool:
        return self.pt not in (0, 8)

    @property
    def event(self) -> tuple[int, bool, int]:
        """(event code, end bit, duration) of a telephone-event packet."""
        code, flags, duration = struct.unpack("!BBH", self.payload[:4])
        return code, bool(flags & 0x80), duration


def _ip_checksum_ok(header: bytes) -> bool:
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def read_pcap(path) -> list[Packet]:
    data = path.read_bytes()
    magic, major, minor, _tz, _sig, _snap, linktype = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xA1B2C3D4 and (major, minor) == (2, 4)
    assert linktype == 1, "expected Ethernet (DLT_EN10MB)"
    packets, off = [], 24
    while off < len(data):
        sec, usec, incl, orig = struct.unpack("<IIII", data[off:off + 16])
        off += 16
        frame = data[off:off + incl]
        off += incl
        assert incl == orig == len(frame)
        assert frame[12:14] == b"\x08\x00", "EtherType must be IPv4"
        ip = frame[14:34]
        assert ip[0] == 0x45 and ip[9] == socket.IPPROTO_UDP
        assert _ip_checksum_ok(ip)
        assert ip[12:16] == ip[16:20] == socket.inet_aton("127.0.0.1")
        assert struct.unpack("!H", ip[2:4])[0] == len(frame) - 14
        udp = frame[34:]
        assert struct.unpack("!H", udp[4:6])[0] == len(udp)
        rtp = udp[8:]
        b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", rtp[:12])
        assert b0 == 0x80, "RTP v2, no padding/extension/CSRC"
        packets.append(Packet(sec * 1_000_000 + usec, b1 & 0x7F, bool(b1 & 0x80),
                              seq, ts, ssrc, rtp[12:]))
    return packets


def event_groups(packets: list[Packet]) -> list[list[Packet]]:
    """Telephone-event packets grouped by event (same RTP timestamp)."""
    events = [p for p in packets if p.is_event]
    return [list(g) for _, g in groupby(events, key=lambda p: p.ts)]


@pytest.mark.parametrize("digits", ["4711", "9", "*", "#0", "0123456789*#ABCD", "1111"])
def test_stream_is_monotonic_with_one_ssrc(tmp_path, digits):
    packets = read_pcap(write_dtmf_pcap(digits, tmp_path / "d.pcap"))
    assert len({p.ssrc for p in packets}) == 1
    seqs = [p.seq for p in packets]
    assert all(b == a + 1 for a, b in zip(seqs, seqs[1:])), "seq must go up by one per packet"
    stamps = [p.ts for p in packets]
    assert all(b >= a for a, b in zip(stamps, stamps[1:])), "RTP timestamps must not go back"
    times = [p.time_us for p in packets]
    assert all(b >= a for a, b in zip(times, times[1:])), "pcap timestamps must not go back"


@pytest.mark.parametrize("digits", ["4711", "#0", "*", "0123456789*#ABCD", "55"])
def test_one_event_per_digit_with_end_packets(tmp_path, digits):
    tone_ms = 160
    packets = read_pcap(write_dtmf_pcap(digits, tmp_path / "d.pcap", tone_ms=tone_ms))
    groups = event_groups(packets)
    assert [g[0].event[0] for g in groups] == [EVENTS[d] for d in digits]
    for group in groups:
        assert len({p.event[0] for p in group}) == 1
        assert [p.marker for p in group] == [True] + [False] * (len(group) - 1)
        ends = [p for p in group if p.event[1]]
        assert len(ends) == 3 and group[-3:] == ends, "end packet sent 3 times, last"
        assert {p.event[2] for p in ends} == {tone_ms * 8}
        running = [p.event[2] for p in group if not p.event[1]]
        assert running == [160 * (k + 1) for k in range(tone_ms // 20)], "20 ms updates"
    starts = [g[0].ts for g in groups]
    assert all(b > a for a, b in zip(starts, starts[1:])), "events strictly later"


def test_timing_follows_parameters(tmp_path):
    start_ms, tone_ms, gap_ms = 500, 100, 300
    packets = read_pcap(write_dtmf_pcap("123", tmp_path / "d.pcap", start_ms=start_ms,
                                        tone_ms=tone_ms, gap_ms=gap_ms))
    first = packets[0]
    groups = event_groups(packets)
    starts = [g[0].ts - first.ts for g in groups]
    assert starts == [8 * (start_ms + i * (tone_ms + gap_ms)) for i in range(3)]
    for p in packets:
        # pcap time (what SIPp paces by) matches the RTP clock: an event
        # packet is sent when its duration has elapsed (minus one packet).
        elapsed_ms = (p.time_us - first.time_us) / 1000
        if not p.is_event:
            assert elapsed_ms == (p.ts - first.ts) / 8
        else:
            _code, end, duration = p.event
            expected = (p.ts - first.ts + duration) / 8 - (0 if end else 20)
            assert elapsed_ms == expected


def test_audio_fills_the_gaps_but_not_the_tones(tmp_path):
    packets = read_pcap(write_dtmf_pcap("12", tmp_path / "d.pcap", start_ms=200))
    audio = [p for p in packets if not p.is_event]
    assert audio, "silence packets expected by default"
    assert {p.pt for p in audio} == {8} and {len(p.payload) for p in audio} == {160}
    assert all(b.ts - a.ts >= 160 for a, b in zip(audio, audio[1:]))
    assert sum(1 for p in audio if p.ts < event_groups(packets)[0][0].ts) == 200 // 20
    for group in event_groups(packets):
        begin, end = group[0].time_us, group[-1].time_us
        assert not [p for p in audio if begin <= p.time_us <= end], "audio during a tone"


def test_without_audio_and_custom_payload_type(tmp_path):
    packets = read_pcap(write_dtmf_pcap("*9", tmp_path / "d.pcap", payload_type=96,
                                        with_audio=False))
    assert {p.pt for p in packets} == {96}
    assert len(event_groups(packets)) == 2


def test_lower_case_letters_and_path_returned(tmp_path):
    path = write_dtmf_pcap("abcd", tmp_path / "sub" / "d.pcap")
    assert path == tmp_path / "sub" / "d.pcap" and path.exists()
    assert [g[0].event[0] for g in event_groups(read_pcap(path))] == [12, 13, 14, 15]


@pytest.mark.parametrize("digits", ["", "12x", "1 2", "E"])
def test_rejects_bad_digits(tmp_path, digits):
    with pytest.raises(ValueError):
        write_dtmf_pcap(digits, tmp_path / "d.pcap")



def test_speech_filler_and_per_digit_gaps(tmp_path):
    p = write_dtmf_pcap("12", tmp_path / "s.pcap", start_ms=100, gap_ms=[1000, 200], speech=True)
    packets = read_pcap(p)
    audio = [x.payload for x in packets if x.pt == 8]
    assert audio and any(pl != b"\xd5" * 160 for pl in audio)  # real speech, not silence
    groups = event_groups(packets)
    assert len(groups) == 2
    assert (groups[1][0].ts - groups[0][0].ts) == (160 + 1000) * 8  # the first pause is 1 s
