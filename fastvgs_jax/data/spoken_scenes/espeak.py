"""libespeak-ng through ctypes: waveform plus phoneme events, no system install.

The library comes from the ``espeakng-loader`` wheel. It keeps global state (one voice, one
callback), so one process owns one synthesiser; parallelism is by processes, never threads.
"""

from __future__ import annotations

import _ctypes
import ctypes
import dataclasses

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1

# espeak_PARAMETER
RATE = 1
PITCH = 3
RANGE = 4
WORDGAP = 7


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    ]


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


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclasses.dataclass(frozen=True)
class Synthesis:
    """One synthesised utterance at the synthesiser's native rate.

    Attributes:
      samples: int16 waveform, [num_samples].
      sample_rate: samples per second (22050 for libespeak-ng).
      phonemes: espeak phoneme mnemonics in order, e.g. ``'E``, ``_:``.
      onsets: sample index where each phoneme starts, [num_phonemes], non-decreasing.
    """

    samples: np.ndarray
    sample_rate: int
    phonemes: tuple[str, ...]
    onsets: np.ndarray


class Espeak:
    """The process-wide libespeak-ng synthesiser.

    libespeak-ng keeps hidden state from one utterance to the next (for most voice variants the
    same request gives other samples depending on what was spoken before), and some variants
    draw from libc's ``rand()``. ``reset`` reloads the library to its initial state and reseeds
    ``rand()``; call it before every unit of work whose bytes must not
    depend on scheduling. With a reset before it, ``synthesize`` is deterministic for identical
    text, voice and parameters. The library is process-global: one live instance per process.
    """

    _live = False

    def __init__(self) -> None:
        if Espeak._live:
            raise RuntimeError(
                "an Espeak engine is already live in this process; libespeak-ng is "
                "process-global, so reuse it (or close() it first)"
            )
        Espeak._live = True
        self._lib = None
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        # Keep a reference: ctypes frees the trampoline when the Python object dies.
        self._callback = _SynthCallback(self._on_audio)
        self._voice: str | None = None
        self._load()

    def _load(self) -> None:
        import espeakng_loader

        # Variants with noise (e.g. Reed, caleb) draw from libc's process-wide rand(), from
        # initialisation on.
        ctypes.CDLL(None).srand(0)
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_path = espeakng_loader.get_data_path().encode()
        lib.espeak_Initialize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_PHONEME_EVENTS
        )
        if rate <= 0:
            raise RuntimeError(
                f"espeak_Initialize failed (returned {rate}); data path {data_path!r}"
            )
        self.sample_rate = int(rate)
        lib.espeak_SetSynthCallback(self._callback)
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        self._lib = lib
        self._voice = None

    def _unload(self) -> None:
        if self._lib is not None:
            self._lib.espeak_Terminate()
            handle, self._lib = self._lib._handle, None
            _ctypes.dlclose(handle)  # the last reference: the next load starts from scratch

    def reset(self) -> None:
        """Reloads libespeak-ng so the next utterance does not depend on earlier ones."""
        self._unload()
        self._load()

    def close(self) -> None:
        self._unload()
        Espeak._live = False

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                name = event.id.string.decode("ascii", errors="replace")
                self._events.append((name, int(event.sample)))
            i += 1
        return 0

    def set_voice(self, voice: str) -> None:
        if self._lib is None:
            raise RuntimeError("this Espeak engine is closed")
        if voice == self._voice:
            return
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak has no voice named {voice!r}")
        self._voice = voice

    def synthesize(
        self, text: str, *, voice: str, rate_wpm: int, pitch: int, pitch_range: int, word_gap: int
    ) -> Synthesis:
        """Speaks ``text``; parameters are espeak's (words/min, 0..100, 0..100, 10 ms units)."""
        if not text.strip():
            raise ValueError("cannot synthesise empty text")
        self.set_voice(voice)
        for parameter, value in (
            (RATE, rate_wpm),
            (PITCH, pitch),
            (RANGE, pitch_range),
            (WORDGAP, word_gap),
        ):
            self._lib.espeak_SetParameter(parameter, int(value), 0)
        self._chunks, self._events = [], []
        encoded = text.encode("utf-8")
        buffer = ctypes.create_string_buffer(encoded)
        status = self._lib.espeak_Synth(
            buffer, len(encoded) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r}")
        self._lib.espeak_Synchronize()
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        names = tuple(name for name, _ in self._events)
        onsets = np.array([sample for _, sample in self._events], dtype=np.int64)
        return Synthesis(samples.astype(np.int16), self.sample_rate, names, onsets)
