"""The phone inventory: espeak-ng en-us phoneme mnemonics mapped to ARPAbet (39 phones) + SIL.

espeak marks stress with a leading ``'`` (primary) or ``,`` (secondary); stress is dropped.
Reduced and allophonic variants fold into their ARPAbet phone (``@``, ``@2``, ``a#`` → AH;
``t#``, ``t2``, ``?`` (glottal stop) → T). R-coloured vowels and the syllabic ``@L`` are one
espeak event but two ARPAbet phones: the event's span is split evenly between them. Pauses
(``_``, ``_:``, ``_!``) are SIL. ``;`` (palatalisation) is a modifier and joins the phone
before it.
"""

from __future__ import annotations

ARPABET = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH",
    "UH", "UW", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
SILENCE = "SIL"
# Index 0 is silence; the rest follow ARPABET's order. Stored ids index this tuple.
INVENTORY = (SILENCE, *ARPABET)
PHONE_ID = {p: i for i, p in enumerate(INVENTORY)}

ESPEAK_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # vowels
    "0": ("AA",), "aa": ("AA",), "A:": ("AA",), "A@": ("AA", "R"),
    "a": ("AE",), "a#": ("AH",), "@": ("AH",), "@2": ("AH",), "V": ("AH",), "@L": ("AH", "L"),
    "@5": ("AH",), "3": ("ER",), "3:": ("ER",), "aI3": ("AY", "ER"), "aI@": ("AY", "AH"),
    "aU@": ("AW", "ER"), "O:": ("AO",), "O2": ("AO",), "O": ("AO",), "O@": ("AO", "R"),
    "o@": ("AO", "R"), "aU": ("AW",), "aI": ("AY",), "E": ("EH",), "e@": ("EH", "R"),
    "eI": ("EY",), "I": ("IH",), "I#": ("IH",), "I2": ("IH",), "i@": ("IH", "R"),
    "i@3": ("IH", "R"), "i": ("IY",), "i:": ("IY",), "oU": ("OW",), "oU#": ("OW",),
    "OI": ("OY",), "U": ("UH",), "U@": ("UH", "R"), "u:": ("UW",), "u": ("UW",),
    # consonants
    "b": ("B",), "tS": ("CH",), "d": ("D",), "D": ("DH",), "f": ("F",), "g": ("G",),
    "h": ("HH",), "dZ": ("JH",), "k": ("K",), "l": ("L",), "m": ("M",), "n": ("N",),
    "n-": ("N",), "N": ("NG",), "p": ("P",), "r": ("R",), "r-": ("R",), "s": ("S",),
    "S": ("SH",), "t": ("T",), "t#": ("T",), "t2": ("T",), "?": ("T",), "T": ("TH",),
    "v": ("V",), "w": ("W",), "j": ("Y",), "z": ("Z",), "Z": ("ZH",), "x": ("K",),
    # pauses and modifiers
    "_": (SILENCE,), "_:": (SILENCE,), "_!": (SILENCE,), "_^_": (SILENCE,), ";": (),
}  # fmt: skip


def espeak_to_arpabet(mnemonic: str) -> tuple[str, ...]:
    """ARPAbet phones for one espeak phoneme event (empty: merge into the previous phone).

    Raises:
      KeyError: naming the mnemonic, if espeak produced a phoneme this table does not know.
    """
    key = mnemonic.lstrip("',")
    try:
        return ESPEAK_TO_ARPABET[key]
    except KeyError:
        raise KeyError(
            f"espeak phoneme {mnemonic!r} is not in the phone inventory; add it to "
            "ESPEAK_TO_ARPABET in fastvgs_jax/data/spoken_scenes/phones.py"
        ) from None
