"""A tiny lang dir and features for the GMM and graph tests (a test fixture, not a stage).

The lang dir is built by the real stage-2 code (`steps_py.lang.prepare.prepare_lang`: topo
from ``fst_build.make_topo``, L.fst and L_disambig.fst from ``fst_build.make_lexicon_fst``,
symbol tables, phones/*, oov) from a 3-word dict dir, so the graph tests exercise those
builders; only G.fst, a unigram loop over the three words, is written here. Features are
Gaussian blobs, one mean per phone, so the right alignment is known.
"""

from __future__ import annotations

import math
from pathlib import Path

import kaldifst
import numpy as np

from steps_py.lang.lexicon import DictDir, LexEntry, Lexicon
from steps_py.lang.prepare import prepare_lang
from steps_py.lang.symbols import read_symbol_table

LEXICON = {
    "!SIL": ["SIL"],
    "<SPOKEN_NOISE>": ["SPN"],
    "<UNK>": ["SPN"],
    "A": ["a"],
    "B": ["b"],
    "C": ["c", "a"],
}
# What prepare_lang makes of LEXICON: <SPOKEN_NOISE> and <UNK> share SPN (#1, #2) and one more
# #k marks the silence arc of L_disambig; words in C-locale order between <eps> and #0 <s> </s>.
PHONES = ["<eps>", "SIL", "SPN", "a", "b", "c", "#0", "#1", "#2", "#3"]
WORDS = ["<eps>", "!SIL", "<SPOKEN_NOISE>", "<UNK>", "A", "B", "C", "#0", "<s>", "</s>"]


def toy_dict() -> DictDir:
    """The toy's dict dir: SIL and SPN silence phones, a b c non-silence."""
    lex = Lexicon([LexEntry(w, tuple(p)) for w, p in LEXICON.items()])
    return DictDir(
        lex,
        silence_phones=[["SIL"], ["SPN"]],
        nonsilence_phones=[["a"], ["b"], ["c"]],
        optional_silence="SIL",
    )


def _grammar_fst_text() -> str:
    """A uniform unigram loop over the real words (cost = -log prob), no disambiguation needed."""
    wid = {w: i for i, w in enumerate(WORDS)}
    words = ["A", "B", "C"]
    lines = [f"0 0 {wid[w]} {wid[w]} {math.log(len(words))}" for w in words]
    lines.append("0 0")
    return "\n".join(lines) + "\n"


def make_toy_lang(lang: Path, with_grammar: bool = True) -> Path:
    """Write a complete tiny lang dir (and G.fst when `with_grammar`) under `lang`."""
    lang = Path(lang)
    dd = toy_dict()
    dd.validate("toy dict")
    prepare_lang(dd, lang)
    for name, expected in (("phones.txt", PHONES), ("words.txt", WORDS)):  # the ids the tests use
        got = [s for s, _ in read_symbol_table(lang / name)]
        assert got == expected, f"prepare_lang wrote {name} {got}, the toy expects {expected}"
    if with_grammar:
        g = kaldifst.compile(s=_grammar_fst_text(), acceptor=False)
        kaldifst.arcsort(g, sort_type="ilabel")
        g.write(str(lang / "G.fst"))
    return lang


PHONE_MEANS = {"SIL": 0.0, "SPN": -4.0, "a": 4.0, "b": 8.0, "c": -8.0}


def toy_features(
    phone_segments: list[tuple[str, int]], dim: int = 13, seed: int = 0, noise: float = 0.5
) -> np.ndarray:
    """Features for a sequence of (phone, n_frames) segments: each phone a fixed mean + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for ph, n in phone_segments:
        mean = np.zeros(dim, dtype=np.float32)
        mean[: dim // 2] = PHONE_MEANS[ph]
        mean[dim // 2 :] = -PHONE_MEANS[ph] / 2
        rows.append(mean + noise * rng.standard_normal((n, dim)).astype(np.float32))
    return np.concatenate(rows, axis=0)


def toy_utterance(
    words: list[str], rng: np.random.Generator, seed: int, min_len: int = 6, max_len: int = 14
) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Features (T, 13) for `words` between silences, and the true (phone, frames) segments."""
    segs = [("SIL", int(rng.integers(min_len, max_len)))]
    for w in words:
        segs += [(ph, int(rng.integers(min_len, max_len))) for ph in LEXICON[w]]
    segs.append(("SIL", int(rng.integers(min_len, max_len))))
    return toy_features(segs, seed=seed), segs


def toy_corpus(
    n_utts: int, seed: int = 1
) -> list[tuple[str, list[str], np.ndarray, list[tuple[str, int]]]]:
    """`n_utts` random utterances of 1-3 words: (utt id, words, features, true segments)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_utts):
        words = [str(w) for w in rng.choice(["A", "B", "C"], size=int(rng.integers(1, 4)))]
        feats, segs = toy_utterance(words, rng, seed=seed * 1000 + i)
        out.append((f"utt{i:03d}", words, feats, segs))
    return out
