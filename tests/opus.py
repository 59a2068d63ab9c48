"""A real Opus codec for the tests: libopus (Debian's libopus0) through ctypes.

What a raw client records is checked by decoding it as a browser would, not by looking at bytes: a frame
the page encrypted is still a valid-looking Opus packet to libopus often enough (any first byte is a table
of contents), so "it decodes" proves nothing; what the decoded audio sounds like does.

    with OpusDecoder(48000) as decoder:
        samples = decoder.decode(packet)       # float32 in -1..1, one channel

OpusEncoder exists so that the decoder can be checked without a browser.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

MAX_FRAME_SAMPLES = 5760  # 120 ms at 48 kHz: the most one Opus packet holds
APPLICATION_VOIP = 2048  # OPUS_APPLICATION_VOIP
MAX_PACKET_BYTES = 1500


class OpusError(Exception):
    """libopus refused: its own error text."""


def _load() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("opus") or "libopus.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    int_p = ctypes.POINTER(ctypes.c_int)
    lib.opus_strerror.restype = ctypes.c_char_p
    lib.opus_strerror.argtypes = [ctypes.c_int]
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, int_p]
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decode_float.restype = ctypes.c_int
    lib.opus_decode_float.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                      ctypes.POINTER(ctypes.c_float), ctypes.c_int, ctypes.c_int]
    lib.opus_encoder_create.restype = ctypes.c_void_p
    lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int, int_p]
    lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_encode_float.restype = ctypes.c_int32
    lib.opus_encode_float.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int,
                                      ctypes.c_char_p, ctypes.c_int32]
    return lib


_LIB = _load()


def missing_opus() -> str | None:
    """Why libopus cannot be used here, or None when it can."""
    if _LIB is None:
        return "libopus not found (apt-get install libopus0)"
    return None


def _check(code: int) -> int:
    if code < 0:
        raise OpusError(_LIB.opus_strerror(code).decode())
    return code


class OpusDecoder:
    """One stream's decoder (it keeps state from packet to packet, as a page's does)."""

    def __init__(self, rate: int = 48000, channels: int = 1):
        if _LIB is None:
            raise OpusError(missing_opus())
        error = ctypes.c_int(0)
        self._state = _LIB.opus_decoder_create(rate, channels, ctypes.byref(error))
        _check(error.value)
        self.rate = rate
        self.channels = channels
        self._pcm = (ctypes.c_float * (MAX_FRAME_SAMPLES * channels))()

    def decode(self, packet: bytes | None) -> np.ndarray:
        """The samples of one packet (interleaved if stereo); None conceals one lost 20 ms frame."""
        if packet is None:
            frame = self.rate // 50
            count = _check(_LIB.opus_decode_float(self._state, None, 0, self._pcm, frame, 0))
        else:
            count = _check(_LIB.opus_decode_float(self._state, bytes(packet), len(packet), self._pcm,
                                                  MAX_FRAME_SAMPLES, 0))
        return np.ctypeslib.as_array(self._pcm)[: count * self.channels].copy()

    def close(self) -> None:
        if self._state:
            _LIB.opus_decoder_destroy(self._state)
            self._state = None

    def __enter__(self) -> OpusDecoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OpusEncoder:
    """A mono VoIP encoder: 20 ms frames in, packets out."""

    def __init__(self, rate: int = 48000):
        if _LIB is None:
            raise OpusError(missing_opus())
        error = ctypes.c_int(0)
        self._state = _LIB.opus_encoder_create(rate, 1, APPLICATION_VOIP, ctypes.byref(error))
        _check(error.value)
        self.frame_samples = rate // 50
        self._packet = ctypes.create_string_buffer(MAX_PACKET_BYTES)

    def encode(self, samples: np.ndarray) -> bytes:
        """One packet for exactly one 20 ms frame of float samples."""
        frame = np.ascontiguousarray(samples, dtype=np.float32)
        if frame.shape != (self.frame_samples,):
            raise ValueError(f"a frame is {self.frame_samples} samples")
        pointer = frame.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        size = _check(_LIB.opus_encode_float(self._state, pointer, self.frame_samples, self._packet, MAX_PACKET_BYTES))
        return self._packet.raw[:size]

    def close(self) -> None:
        if self._state:
            _LIB.opus_encoder_destroy(self._state)
            self._state = None

    def __enter__(self) -> OpusEncoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
