"""tests/opus.py, the Opus decoder that tells what a recorded frame sounds like: libopus through ctypes.

The browser side (a page's real frames, recorded through the relay, decode to its tone) is in
tests/test_browser_groups.py; these check the decoder alone, without a browser. libopus0 is a Debian
package that .ci/run installs: without it these fail, saying so.
"""

from __future__ import annotations

import numpy as np
import pytest

from browser import dominant_hz
from opus import OpusDecoder, OpusEncoder, OpusError

RATE = 48000


def tone(hz: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_opus_decoder_turns_packets_of_a_tone_back_into_the_tone():
    """A second of 440 Hz encoded by libopus in 20 ms packets decodes to 440 Hz at its level."""
    samples = tone(440, 1.0)
    with OpusEncoder(RATE) as encoder, OpusDecoder(RATE) as decoder:
        packets = [encoder.encode(samples[i : i + 960]) for i in range(0, len(samples), 960)]
        decoded = np.concatenate([decoder.decode(packet) for packet in packets])
    assert len(decoded) == len(samples)
    settled = decoded[RATE // 5 :]  # past the codec's start
    assert dominant_hz(settled, RATE) == pytest.approx(440, abs=1)
    assert np.sqrt(np.mean(settled**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_opus_decoder_conceals_a_lost_frame_and_refuses_a_corrupt_packet():
    """None stands for a lost packet (20 ms of concealment); a packet libopus cannot parse raises OpusError."""
    with OpusDecoder(RATE) as decoder:
        assert len(decoder.decode(None)) == 960
        with pytest.raises(OpusError, match="corrupted"):
            decoder.decode(b"\x03")


def test_random_bytes_often_decode_so_only_the_sound_tells():
    """Random 100-byte messages decode as Opus some of the time (a quarter here), to noise: a test that
    encrypted frames cannot be heard must listen to what they decode to, not count decode errors."""
    rng = np.random.default_rng(22)
    decoded = []
    with OpusDecoder(RATE) as decoder:
        for _ in range(200):
            try:
                decoded.append(decoder.decode(rng.integers(0, 256, 100, dtype=np.uint8).tobytes()))
            except OpusError:
                pass
    assert 10 < len(decoded) < 190
