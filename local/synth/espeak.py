"""Minimal ctypes binding to the espeak-ng library shipped in the `espeakng-loader` wheel.

No Python package on our index exposes espeak-ng's *retrieval* mode with phoneme events
(the wheel only ships the shared library and its data), so this module binds the C
functions we need: ``espeak_Initialize`` (synchronous output, samples delivered to a
callback), ``espeak_SetVoiceByName``, ``espeak_SetParameter``, ``espeak_SetSynthCallback``,
``espeak_Synth`` and ``espeak_ng_SetRandSeed``.  espeak-ng keeps global state, so there is
one engine per process.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import numpy as np

# enum espeak_AUDIO_OUTPUT
AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeak_Initialize options
ESPEAK_INITIALIZE_PHONEME_EVENTS = 0x0001
ESPEAK_INITIALIZE_DONT_EXIT = 0x8000
# enum espeak_PARAMETER
ESPEAK_RATE, ESPEAK_VOLUME, ESPEAK_PITCH, ESPEAK_RANGE = 1, 2, 3, 4
# espeak_Synth flags / position type
ESPEAK_CHARS_UTF8 = 1
POS_CHARACTER = 1
# enum espeak_EVENT_TYPE
EVENT_LIST_TERMINATED = 0
EVENT_PHONEME = 7

NATIVE_RATE = 22050


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class EspeakError(RuntimeError):
    """espeak-ng could not be loaded or refused a request."""


@dataclass
class Synthesis:
    """One synthesized sentence at the native rate (int16 samples) with phoneme onsets."""

    samples: np.ndarray
    sample_rate: int
    phone_times: list[tuple[str, float]] = field(default_factory=list)


class Espeak:
    """The process-wide espeak-ng engine in synchronous retrieval mode."""

    _instance: Espeak | None = None

    def __init__(self, phoneme_events: bool = True) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - dependency missing
            raise EspeakError(
                "espeakng-loader is not installed: pip install espeakng-loader"
            ) from e
        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise EspeakError(
                f"cannot load libespeak-ng from {lib_path}: {e}; reinstall espeakng-loader"
            ) from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        # espeak-ng >= 1.52 seeds its noise generator (breathy voices) from here; older: absent
        self._set_rand_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_rand_seed is not None:
            self._set_rand_seed.argtypes = [ctypes.c_long]
            self._set_rand_seed.restype = None
        options = ESPEAK_INITIALIZE_DONT_EXIT
        if phoneme_events:
            options |= ESPEAK_INITIALIZE_PHONEME_EVENTS
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), options)
        if rate <= 0:
            raise EspeakError(
                f"espeak_Initialize failed (returned {rate}) with data at {data_path}; "
                "the espeakng-loader install looks broken, reinstall it"
            )
        self.lib = lib
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._phones: list[tuple[str, int]] = []
        self._callback = _SYNTH_CALLBACK(self._on_audio)  # keep a reference alive
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    @classmethod
    def get(cls) -> Espeak:
        """The engine of this process (initialised on first use)."""
        if cls._instance is None:
            cls._instance = Espeak()
        return cls._instance

    def _on_audio(self, wav, numsamples, events) -> int:  # noqa: ANN001 - ctypes types
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("ascii", "replace")
                self._phones.append((name, int(ev.audio_position)))
            i += 1
        return 0

    def set_voice(self, voice: str) -> None:
        if voice != self._voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise EspeakError(
                    f"espeak-ng has no voice {voice!r} (see espeak-ng-data/voices/!v)"
                )
            self._voice = voice

    def synth(
        self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, rand_seed: int = 0
    ) -> Synthesis:
        """Synthesize `text` with `voice` (e.g. "cmn+m3"), rate in words/min, pitch/range 0-100.

        `rand_seed` seeds espeak's internal noise source (used by breathy variants), so the
        same call gives the same samples from the same engine state.
        """
        self.set_voice(voice)
        if self._set_rand_seed is not None:
            self._set_rand_seed(int(rand_seed) & 0x7FFFFFFF)
        for param, value in (
            (ESPEAK_RATE, rate),
            (ESPEAK_PITCH, pitch),
            (ESPEAK_RANGE, pitch_range),
        ):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._chunks, self._phones = [], []
        data = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(
            data, len(data), 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None
        )
        if err != 0:
            raise EspeakError(f"espeak_Synth failed (error {err}) for text {text!r}")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        phones = [(p, ms / 1000.0) for p, ms in self._phones]
        return Synthesis(samples=samples, sample_rate=self.sample_rate, phone_times=phones)
