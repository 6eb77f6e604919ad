"""A tiny synthetic lang dir and features, for tests and smoke runs of the GMM stage.

It writes the files stage 2 would write (phones.txt, words.txt, topo, L.fst,
L_disambig.fst, phones/*, oov.txt, G.fst) for a 3-word lexicon, so that the GMM and
graph code can be tested without depending on the real lang preparation. Features are
Gaussian blobs, one mean per phone, so the right alignment is known.
"""

from __future__ import annotations

import math
from pathlib import Path

import kaldifst
import numpy as np

PHONES = ["<eps>", "SIL", "SPN", "a", "b", "c", "#0", "#1"]
WORDS = ["<eps>", "!SIL", "<SPOKEN_NOISE>", "<UNK>", "A", "B", "C", "#0", "<s>", "</s>"]
LEXICON = {"!SIL": ["SIL"], "<SPOKEN_NOISE>": ["SPN"], "<UNK>": ["SPN"], "A": ["a"], "B": ["b"], "C": ["c", "a"]}


def _topo_text(nonsil: list[int], sil: list[int]) -> str:
    def block(phones: list[int], n: int) -> str:
        lines = ["<TopologyEntry>", "<ForPhones>", " ".join(map(str, phones)), "</ForPhones>"]
        for s in range(n):
            if n == 3:
                lines.append(f"<State> {s} <PdfClass> {s} <Transition> {s} 0.75 <Transition> {s + 1} 0.25 </State>")
            elif s == 0:
                lines.append("<State> 0 <PdfClass> 0 <Transition> 0 0.25 <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 </State>")
            elif s < n - 1:
                lines.append(f"<State> {s} <PdfClass> {s} <Transition> 1 0.25 <Transition> 2 0.25 <Transition> 3 0.25 <Transition> 4 0.25 </State>")
            else:
                lines.append(f"<State> {s} <PdfClass> {s} <Transition> {s} 0.75 <Transition> {s + 1} 0.25 </State>")
        lines += [f"<State> {n} </State>", "</TopologyEntry>"]
        return "\n".join(lines)

    return "<Topology>\n" + block(nonsil, 3) + "\n" + block(sil, 5) + "\n</Topology>\n"


def _lexicon_fst_text(disambig: bool, sil_prob: float = 0.5) -> str:
    """Kaldi's make_lexicon_fst.py with optional silence: 0 start, 1 loop, 2 silence."""
    p = {w: PHONES.index(x) for w, x in [(q, q) for q in PHONES]}
    wid = {w: i for i, w in enumerate(WORDS)}
    no_sil, sil = -math.log(1 - sil_prob), -math.log(sil_prob)
    lines = [f"0 1 0 0 {no_sil}", f"0 2 0 0 {sil}", f"2 1 {p['SIL']} 0 0"]
    nxt = 3
    for w, prons in LEXICON.items():
        phones = list(prons)
        if disambig and w == "A":  # "C" = "c a" has "a" as a suffix... prefix rule: mark A's pron
            phones = phones + ["#1"]
        src = 1
        for i, ph in enumerate(phones):
            olab = wid[w] if i == 0 else 0
            last = i == len(phones) - 1
            if last:
                lines.append(f"{src} 1 {p[ph]} {olab} {no_sil}")
                lines.append(f"{src} 2 {p[ph]} {olab} {sil}")
            else:
                lines.append(f"{src} {nxt} {p[ph]} {olab} 0")
                src, nxt = nxt, nxt + 1
    if disambig:
        lines.append(f"1 1 {p['#0']} {wid['#0']} 0")
    lines.append("1 0")
    return "\n".join(lines) + "\n"


def _grammar_fst_text(weights: dict[str, float] | None = None) -> str:
    """A unigram loop over the real words (cost = -log prob), no disambiguation needed."""
    wid = {w: i for i, w in enumerate(WORDS)}
    words = ["A", "B", "C"]
    weights = weights or {w: 1.0 / len(words) for w in words}
    lines = [f"0 0 {wid[w]} {wid[w]} {-math.log(weights[w])}" for w in words]
    lines.append("0 0")
    return "\n".join(lines) + "\n"


def _write_fst(text: str, path: Path, sort: str) -> None:
    fst = kaldifst.compile(s=text, acceptor=False)
    kaldifst.arcsort(fst, sort_type=sort)
    fst.write(str(path))


def make_toy_lang(lang: Path, with_grammar: bool = True, grammar_weights: dict[str, float] | None = None) -> Path:
    """Write a complete tiny lang dir (and G.fst when `with_grammar`) under `lang`."""
    lang = Path(lang)
    (lang / "phones").mkdir(parents=True, exist_ok=True)
    (lang / "phones.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate(PHONES)))
    (lang / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(WORDS)))
    (lang / "topo").write_text(_topo_text([3, 4, 5], [1, 2]))
    (lang / "oov.txt").write_text("<UNK>\n")
    (lang / "oov.int").write_text(f"{WORDS.index('<UNK>')}\n")
    sets = {"silence": ["SIL", "SPN"], "nonsilence": ["a", "b", "c"], "optional_silence": ["SIL"], "disambig": ["#0", "#1"]}
    for name, phones in sets.items():
        ids = [PHONES.index(x) for x in phones]
        (lang / "phones" / f"{name}.txt").write_text("".join(f"{x}\n" for x in phones))
        (lang / "phones" / f"{name}.int").write_text("".join(f"{i}\n" for i in ids))
        (lang / "phones" / f"{name}.csl").write_text(":".join(map(str, ids)) + "\n")
    _write_fst(_lexicon_fst_text(False), lang / "L.fst", "olabel")
    _write_fst(_lexicon_fst_text(True), lang / "L_disambig.fst", "olabel")
    if with_grammar:
        _write_fst(_grammar_fst_text(grammar_weights), lang / "G.fst", "ilabel")
    return lang


PHONE_MEANS = {"SIL": 0.0, "SPN": -4.0, "a": 4.0, "b": 8.0, "c": -8.0}


def toy_features(phone_segments: list[tuple[str, int]], dim: int = 13, seed: int = 0, noise: float = 0.5) -> np.ndarray:
    """Features for a sequence of (phone, n_frames) segments: each phone a fixed mean + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for ph, n in phone_segments:
        mean = np.zeros(dim, dtype=np.float32)
        mean[: dim // 2] = PHONE_MEANS[ph]
        mean[dim // 2 :] = -PHONE_MEANS[ph] / 2
        rows.append(mean + noise * rng.standard_normal((n, dim)).astype(np.float32))
    return np.concatenate(rows, axis=0)


def toy_utterance(words: list[str], rng: np.random.Generator, seed: int, min_len: int = 6, max_len: int = 14) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Features (T, 13) for `words` between silences, and the true (phone, frames) segments."""
    segs = [("SIL", int(rng.integers(min_len, max_len)))]
    for w in words:
        segs += [(ph, int(rng.integers(min_len, max_len))) for ph in LEXICON[w]]
    segs.append(("SIL", int(rng.integers(min_len, max_len))))
    return toy_features(segs, seed=seed), segs


def toy_corpus(n_utts: int, seed: int = 1) -> list[tuple[str, list[str], np.ndarray, list[tuple[str, int]]]]:
    """`n_utts` random utterances of 1-3 words: (utt id, words, features, true segments)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_utts):
        words = [str(w) for w in rng.choice(["A", "B", "C"], size=int(rng.integers(1, 4)))]
        feats, segs = toy_utterance(words, rng, seed=seed * 1000 + i)
        out.append((f"utt{i:03d}", words, feats, segs))
    return out
