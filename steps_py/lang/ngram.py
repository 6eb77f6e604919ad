"""Character n-gram LM: interpolated modified Kneser-Ney training, ARPA writing, perplexity.

Why this is written here rather than taken from a package: no maintained PyPI package
trains a modified Kneser-Ney model to ARPA offline in this environment. The ``kenlm``
wheel only queries models (``lmplz`` is a C++ binary that is not shipped), NLTK has
neither modified KN nor ARPA output, ``knlm`` saves its own binary format, and
``arpabo`` (a young single-author package) documents plain Kneser-Ney without the three
discounts. SRILM / MITLM / OpenGrm are not pip-installable. A character LM over a few
thousand sentences is small, so a readable pure-Python implementation is enough.

The model (Chen & Goodman 1998, interpolated; the count conventions of KenLM/SRILM):

* sentences are padded as ``<s> w1 .. wk </s>``; ``<s>`` is only ever a context;
* the highest order uses raw counts; a lower-order n-gram uses its continuation count
  ``N1+(. w1..wn)`` (distinct left extensions), except n-grams starting with ``<s>``,
  which cannot be extended to the left and keep their raw counts;
* for each order, three discounts from the count-of-counts n1..n4 of that order's
  (adjusted) counts: ``Y = n1/(n1+2 n2)``, ``D1 = 1-2Y n2/n1``, ``D2 = 2-3Y n3/n2``,
  ``D3+ = 3-4Y n4/n3`` (a fallback 0.5/1.0/1.5, with a warning, when the data are too
  small to estimate them);
* ``p(w|h) = max(c(hw)-D(c(hw)),0)/c(h.) + gamma(h) p(w|h')`` with
  ``gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / c(h.)``; unigrams interpolate with
  the uniform distribution over the vocabulary (``<unk>`` included, ``<s>`` excluded).

In ARPA form every observed n-gram stores its interpolated probability and every context
stores ``gamma(h)`` as its backoff weight; then for an unseen ``w``,
``p(w|h) = gamma(h) p(w|h')`` and each context's distribution sums to 1.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from steps_py.fileio import atomic_write_text

BOS = "<s>"
EOS = "</s>"
log = logging.getLogger("lang.ngram")

NGram = tuple[str, ...]


class ArpaError(ValueError):
    """A malformed ARPA file; the message names the line."""


@dataclass
class NgramLM:
    """An n-gram model in backoff form: log10 probabilities and log10 backoff weights."""

    order: int
    logprob: dict[NGram, float] = field(default_factory=dict)
    backoff: dict[NGram, float] = field(default_factory=dict)
    discounts: dict[int, tuple[float, float, float]] = field(default_factory=dict)

    @property
    def vocab(self) -> set[str]:
        return {g[0] for g in self.logprob if len(g) == 1}

    def counts_per_order(self) -> list[int]:
        c = Counter(len(g) for g in self.logprob)
        return [c[n] for n in range(1, self.order + 1)]

    def log10_prob(self, word: str, history: Sequence[str]) -> float:
        """log10 p(word | history) by the ARPA backoff rule (history is most recent last).

        The word must be in the vocabulary (check `vocab` first).
        """
        h = tuple(history[max(0, len(history) - (self.order - 1)) :]) if self.order > 1 else ()
        total = 0.0
        while True:
            g = (*h, word)
            if g in self.logprob:
                return total + self.logprob[g]
            if not h:
                raise KeyError(f"'{word}' is not in the LM vocabulary")
            total += self.backoff.get(h, 0.0)
            h = h[1:]

    def to_arpa(self) -> str:
        lines = ["", "\\data\\"]
        counts = self.counts_per_order()
        lines += [f"ngram {n}={counts[n - 1]}" for n in range(1, self.order + 1)]
        by_order: dict[int, list[NGram]] = defaultdict(list)
        for g in self.logprob:
            by_order[len(g)].append(g)
        for n in range(1, self.order + 1):
            lines += ["", f"\\{n}-grams:"]
            for g in sorted(by_order[n]):
                line = f"{self.logprob[g]:.7g}\t{' '.join(g)}"
                if n < self.order and g in self.backoff:
                    line += f"\t{self.backoff[g]:.7g}"
                lines.append(line)
        lines += ["", "\\end\\", ""]
        return "\n".join(lines)

    def write_arpa(self, path: Path) -> None:
        atomic_write_text(Path(path), self.to_arpa())


def read_arpa(path: Path) -> NgramLM:
    """Parse an ARPA file into an `NgramLM` (log10 values as stored)."""
    lm = NgramLM(order=0)
    declared: dict[int, int] = {}
    section = "header"
    n = 0
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            if line == "\\data\\":
                section = "data"
                continue
            if line == "\\end\\":
                break
            if line.startswith("\\") and line.endswith("-grams:"):
                n = int(line[1:].split("-")[0])
                section = "ngrams"
                continue
            if section == "data" and line.startswith("ngram "):
                k, v = line[6:].split("=")
                declared[int(k)] = int(v)
                continue
            if section != "ngrams":
                continue
            parts = line.split()
            if len(parts) not in (n + 1, n + 2):
                raise ArpaError(
                    f"{path}:{lineno}: expected {n} words, a log-prob and maybe a backoff: '{line}'"
                )
            try:
                g = tuple(parts[1 : n + 1])
                lm.logprob[g] = float(parts[0])
                if len(parts) == n + 2:
                    lm.backoff[g] = float(parts[n + 1])
            except ValueError:
                raise ArpaError(
                    f"{path}:{lineno}: a log-prob/backoff is not a number: '{line}'"
                ) from None
    if not declared:
        raise ArpaError(f"{path}: no \\data\\ section; not an ARPA file")
    lm.order = max(declared)
    got = lm.counts_per_order()
    for k, v in declared.items():
        if got[k - 1] != v:
            raise ArpaError(f"{path}: header says ngram {k}={v} but the file has {got[k - 1]}")
    return lm


def estimate_discounts(count_of_counts: Counter[int]) -> tuple[float, float, float] | None:
    """Chen & Goodman's D1, D2, D3+ from n1..n4, or None if they cannot be estimated."""
    n1, n2, n3, n4 = (count_of_counts.get(k, 0) for k in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        return None
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if not all(0 < dk < k + 1 for k, dk in enumerate(d)):
        return None
    return d


FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


def _ngram_counts(sentences: Iterable[Sequence[str]], order: int) -> list[Counter[NGram]]:
    """Raw counts of every n-gram (n = 1..order) ending at a real word or </s>."""
    raw: list[Counter[NGram]] = [Counter() for _ in range(order + 1)]
    for sent in sentences:
        toks = (BOS, *sent, EOS)
        for j in range(1, len(toks)):
            for n in range(1, order + 1):
                i = j - n + 1
                if i < 0:
                    break
                raw[n][toks[i : j + 1]] += 1
    return raw


def train_mkn(
    sentences: Iterable[Sequence[str]],
    order: int = 3,
    vocab: Iterable[str] | None = None,
    unk: str = "<unk>",
) -> NgramLM:
    """Train an interpolated modified Kneser-Ney model.

    `vocab` (optional) lists words that get probability even if unseen (the uniform share of
    the unigram); words in the text are always in the vocabulary; `unk` is added.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    raw = _ngram_counts(sentences, order)
    if not raw[1]:
        raise ValueError("the LM text has no sentences; check data/local/lm_text.txt")

    # Adjusted counts: raw at the top order and for <s>-initial n-grams, else continuation.
    adj: list[dict[NGram, int]] = [{} for _ in range(order + 1)]
    adj[order] = dict(raw[order])
    for n in range(order - 1, 0, -1):
        cont: Counter[NGram] = Counter(g[1:] for g in raw[n + 1])
        adj[n] = {g: (c if g[0] == BOS else cont[g]) for g, c in raw[n].items()}

    lm = NgramLM(order=order)
    for n in range(1, order + 1):
        d = estimate_discounts(Counter(adj[n].values()))
        if d is None:
            log.warning(
                "order %d: too little data to estimate MKN discounts; using %s",
                n,
                FALLBACK_DISCOUNTS,
            )
            d = FALLBACK_DISCOUNTS
        lm.discounts[n] = d

    words = set(vocab or ()) | {g[0] for g in raw[1]} | {unk}
    words.discard(BOS)
    prob: dict[NGram, float] = {}
    # Unigrams: discounted continuation counts interpolated with the uniform distribution.
    d1 = lm.discounts[1]
    total = sum(adj[1].values())
    gamma = sum(d1[min(c, 3) - 1] for c in adj[1].values()) / total
    for w in words:
        c = adj[1].get((w,), 0)
        disc = d1[min(c, 3) - 1] if c > 0 else 0.0
        prob[(w,)] = (c - disc) / total + gamma / len(words)
    backoff: dict[NGram, float] = {}
    # Higher orders: group by context, interpolate with the (already final) lower order.
    for n in range(2, order + 1):
        dn = lm.discounts[n]
        ctx_total: dict[NGram, int] = defaultdict(int)
        ctx_disc: dict[NGram, float] = defaultdict(float)
        for g, c in adj[n].items():
            ctx_total[g[:-1]] += c
            ctx_disc[g[:-1]] += dn[min(c, 3) - 1]
        for h, t in ctx_total.items():
            backoff[h] = ctx_disc[h] / t
        for g, c in adj[n].items():
            h = g[:-1]
            prob[g] = (c - dn[min(c, 3) - 1]) / ctx_total[h] + backoff[h] * prob[g[1:]]

    lm.logprob = {g: math.log10(p) for g, p in prob.items()}
    lm.logprob[(BOS,)] = -99.0
    lm.backoff = {h: math.log10(b) for h, b in backoff.items() if b > 0}
    return lm


@dataclass
class PerplexityResult:
    sentences: int
    words: int
    oovs: int
    logprob10: float

    @property
    def perplexity(self) -> float:
        """10 ** (-logprob / (in-vocabulary words + sentence ends)), OOVs excluded (SRILM's ppl)."""
        denom = self.words + self.sentences
        return 10 ** (-self.logprob10 / denom) if denom else float("nan")

    def summary(self) -> str:
        return (
            f"{self.sentences} sentences, {self.words} words, {self.oovs} OOVs; "
            f"logprob= {self.logprob10:.2f} ppl= {self.perplexity:.2f}"
        )


def perplexity(lm: NgramLM, sentences: Iterable[Sequence[str]]) -> PerplexityResult:
    """Score sentences with the ARPA model; an OOV is skipped and cuts the history (as SRILM)."""
    vocab = lm.vocab
    res = PerplexityResult(0, 0, 0, 0.0)
    for sent in sentences:
        hist: list[str] = [BOS]
        res.sentences += 1
        for w in (*sent, EOS):
            if w not in vocab:
                res.oovs += 1
                hist = []
                continue
            res.logprob10 += lm.log10_prob(w, hist)
            if w != EOS:
                res.words += 1
            hist.append(w)
    return res
