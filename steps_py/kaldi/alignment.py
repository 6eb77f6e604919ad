"""Transition-id alignments -> per-frame pdf ids and phones, phone segments, agreement.

    tm = read_kaldi_model("exp/mono/final.mdl").transition_model
    pdfs = to_pdfs(tm, ali)               # int32 [T], what a network is trained on
    phones = to_phones(tm, ali)           # int32 [T], phone id of every frame
    segs = split_to_phones(tm, ali)       # [(phone, first frame, num frames)], Kaldi's SplitToPhones
    agreement = frame_agreement(ours, theirs)   # per-frame agreement of two alignments

``split_to_phones`` follows ``SplitToPhones`` of ``src/hmm/hmm-utils.cc``: a phone ends at
a transition into the final state of its HMM; in a reordered alignment (Kaldi's default:
self-loops before the forward transition) the self-loops that follow it still belong to
it. ``is_reordered`` is Kaldi's IsReordered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from steps_py.kaldi.stream import KaldiFormatError
from steps_py.kaldi.transition_model import TransitionModel


def to_pdfs(tm: TransitionModel, ali: np.ndarray, utt: str = "alignment") -> np.ndarray:
    ali = np.asarray(ali, dtype=np.int64)
    tm.check_ids(ali, utt)
    return tm.tid2pdf[ali].astype(np.int32)


def to_phones(tm: TransitionModel, ali: np.ndarray, utt: str = "alignment") -> np.ndarray:
    ali = np.asarray(ali, dtype=np.int64)
    tm.check_ids(ali, utt)
    return tm.tid2phone[ali].astype(np.int32)


def is_reordered(tm: TransitionModel, ali: np.ndarray) -> bool:
    """Kaldi's IsReordered: are self-loops placed after the forward transition of a state?"""
    ali = np.asarray(ali, dtype=np.int64)
    loop, state = tm.tid_is_self_loop, tm.tid2state
    for a, b in zip(ali[:-1], ali[1:], strict=True):
        if state[a] != state[b]:
            if loop[a]:
                return True  # a state's last frame is its self-loop
            if loop[b]:
                return False  # a state's first frame is its self-loop
    if len(ali) == 0 or loop[ali[0]]:
        return False
    return bool(loop[ali[-1]])


def split_to_phones(
    tm: TransitionModel, ali: np.ndarray, utt: str = "alignment"
) -> list[tuple[int, int, int]]:
    """(phone, start frame, number of frames) of every phone instance, in order."""
    ali = np.asarray(ali, dtype=np.int64)
    tm.check_ids(ali, utt)
    reordered = is_reordered(tm, ali)
    ends: list[int] = []
    i, n = 0, len(ali)
    while i < n:
        if tm.tid_is_final[ali[i]]:
            if reordered:
                while (
                    i + 1 < n
                    and tm.tid_is_self_loop[ali[i + 1]]
                    and tm.tid2state[ali[i + 1]] == tm.tid2state[ali[i]]
                ):
                    i += 1
            ends.append(i + 1)
        elif i + 1 == n:
            ends.append(n)
        i += 1
    out: list[tuple[int, int, int]] = []
    start = 0
    for end in ends:
        phones = set(tm.tid2phone[ali[start:end]].tolist())
        if len(phones) != 1:
            raise KaldiFormatError(
                f"{utt}: frames {start}-{end - 1} mix phones {sorted(phones)}; "
                "the alignment does not follow the model's HMMs"
            )
        out.append((phones.pop(), start, end - start))
        start = end
    return out


def phone_sequence(tm: TransitionModel, ali: np.ndarray, utt: str = "alignment") -> list[int]:
    return [p for p, _, _ in split_to_phones(tm, ali, utt)]


@dataclass
class Agreement:
    """Per-frame agreement of two sets of per-frame labels (e.g. phones of two alignments)."""

    utterances: int = 0
    frames: int = 0
    agreeing: int = 0
    length_mismatch: list[str] = field(default_factory=list)
    only_in_first: int = 0
    only_in_second: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.agreeing / self.frames if self.frames else float("nan")

    def summary(self) -> str:
        return (
            f"{self.percent:.2f} % of {self.frames} frames agree over {self.utterances} utterances "
            f"({len(self.length_mismatch)} skipped for different lengths, {self.only_in_first} only in the "
            f"first, {self.only_in_second} only in the second)"
        )

    def to_dict(self) -> dict:
        return {
            "percent": self.percent,
            "frames": self.frames,
            "agreeing": self.agreeing,
            "utterances": self.utterances,
            "length_mismatch": len(self.length_mismatch),
            "only_in_first": self.only_in_first,
            "only_in_second": self.only_in_second,
        }


def frame_agreement(
    first: Mapping[str, np.ndarray],
    second: Mapping[str, np.ndarray],
    map_first: Callable[[np.ndarray], np.ndarray] | None = None,
    map_second: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Agreement:
    """Share of frames where two per-frame labellings agree, over the utterances both have.

    `map_first`/`map_second` turn each side's labels into comparable ones (e.g. phone ids of
    two different phone tables -> phone names). Utterances of different lengths are listed,
    not compared.
    """
    out = Agreement(
        only_in_first=len(set(first) - set(second)), only_in_second=len(set(second) - set(first))
    )
    for utt in sorted(set(first) & set(second)):
        a, b = np.asarray(first[utt]), np.asarray(second[utt])
        if len(a) != len(b):
            out.length_mismatch.append(utt)
            continue
        if map_first is not None:
            a = map_first(a)
        if map_second is not None:
            b = map_second(b)
        out.utterances += 1
        out.frames += len(a)
        out.agreeing += int(np.sum(np.asarray(a) == np.asarray(b)))
    return out


def phone_names(phones_txt: Mapping[str, int]) -> Callable[[np.ndarray], np.ndarray]:
    """A mapper from phone ids to phone names (for `frame_agreement` across phone tables)."""
    names = np.empty(max(phones_txt.values()) + 1, dtype=object)
    for name, i in phones_txt.items():
        names[i] = name
    return lambda ids: names[np.asarray(ids, dtype=np.int64)]
