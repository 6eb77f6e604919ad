"""Modified Kneser-Ney LM: discounts, hand-computed probabilities, normalisation, ARPA, G.fst."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import kaldifst
import pytest

from steps_py.lang.fst_build import transduce
from steps_py.lang.lm import build_g_fst
from steps_py.lang.ngram import (
    BOS,
    EOS,
    FALLBACK_DISCOUNTS,
    estimate_discounts,
    perplexity,
    read_arpa,
    train_mkn,
)


def test_discounts_from_count_of_counts() -> None:
    # Y = 10/(10+2*5) = 0.5; D1 = 1-2Y*5/10; D2 = 2-3Y*3/5; D3+ = 3-4Y*2/3
    d = estimate_discounts(Counter({1: 10, 2: 5, 3: 3, 4: 2, 7: 1}))
    assert d == pytest.approx((0.5, 1.1, 3 - 4 / 3))
    assert estimate_discounts(Counter({1: 10, 2: 5, 3: 3})) is None  # n4 = 0


def test_bigram_probabilities_by_hand(tmp_path: Path) -> None:
    # Corpus "a b" / "a"; too small for discounts, so D = 0.5, 1.0, 1.5.
    # Unigram continuation counts: a 1 ({<s>}), b 1 ({a}), </s> 2 ({a, b}); total 4;
    # gamma = (0.5+0.5+1.0)/4 = 0.5 spread over {a, b, </s>, <unk>}.
    lm = train_mkn([["a", "b"], ["a"]], order=2)
    assert lm.discounts[1] == FALLBACK_DISCOUNTS
    lm.write_arpa(tmp_path / "lm.arpa")
    arpa = read_arpa(tmp_path / "lm.arpa")
    p = {
        ("a", ()): 0.5 / 4 + 0.5 / 4,
        ("b", ()): 0.5 / 4 + 0.5 / 4,
        (EOS, ()): 1.0 / 4 + 0.5 / 4,
        ("<unk>", ()): 0.5 / 4,
        ("a", (BOS,)): (2 - 1.0) / 2 + 0.5 * 0.25,  # c=2 -> D2; gamma(<s>) = 1.0/2
        ("b", ("a",)): 0.5 / 2 + 0.5 * 0.25,  # gamma(a) = (0.5+0.5)/2
        (EOS, ("a",)): 0.5 / 2 + 0.5 * 0.375,
        (EOS, ("b",)): 0.5 / 1 + 0.5 * 0.375,
        ("a", ("b",)): 0.5 * 0.25,  # unseen: backoff
    }
    for (w, h), expected in p.items():
        assert 10 ** arpa.log10_prob(w, list(h)) == pytest.approx(expected, rel=1e-6), (w, h)


def toy_corpus(n: int = 300, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    alphabet = list("天气北京上海导航播放歌")
    weights = [1 / (i + 1) for i in range(len(alphabet))]
    return [rng.choices(alphabet, weights, k=rng.randint(1, 8)) for _ in range(n)]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_each_context_sums_to_one(tmp_path: Path, order: int) -> None:
    lm = train_mkn(toy_corpus(), order=order, vocab=["天", "雨"], unk="<UNK>")  # 雨 never seen
    if order >= 2:
        assert lm.discounts[order] != FALLBACK_DISCOUNTS  # estimated from the data
    lm.write_arpa(tmp_path / "lm.arpa")
    arpa = read_arpa(tmp_path / "lm.arpa")
    predicted = sorted(arpa.vocab - {BOS})
    assert "雨" in predicted and "<UNK>" in predicted
    contexts = {g for g in arpa.logprob if len(g) < order and g[-1] != EOS} | {()}
    for h in contexts:
        total = sum(10 ** arpa.log10_prob(w, list(h)) for w in predicted)
        assert total == pytest.approx(1.0, abs=2e-5), h


def test_perplexity_by_hand(tmp_path: Path) -> None:
    arpa_text = "\n".join([
        "\\data\\", "ngram 1=4", "ngram 2=2", "",
        "\\1-grams:", "-99\t<s>\t-0.30103", "-0.60206\ta\t-0.1", "-0.60206\tb", "-0.30103\t</s>", "",
        "\\2-grams:", "-0.1\t<s> a", "-0.2\ta b", "", "\\end\\", "",
    ])  # fmt: skip
    (tmp_path / "t.arpa").write_text(arpa_text)
    lm = read_arpa(tmp_path / "t.arpa")
    # "a b": p(a|<s>) + p(b|a) + [bow(b)=0] p(</s>)  ; "a x": x is an OOV, cuts the history
    res = perplexity(lm, [["a", "b"], ["a", "x"]])
    lp = (-0.1 - 0.2 - 0.30103) + (-0.1 + (-0.30103))
    assert (res.sentences, res.words, res.oovs) == (2, 3, 1)
    assert res.logprob10 == pytest.approx(lp)
    assert res.perplexity == pytest.approx(10 ** (-lp / 5))
    assert lm.log10_prob("b", ["b"]) == pytest.approx(-0.60206)  # no bow stored -> 0
    assert lm.log10_prob("b", [BOS]) == pytest.approx(-0.30103 - 0.60206)


def test_arpa_to_g_fst_with_kaldilm(tmp_path: Path) -> None:
    lm = train_mkn([["a", "b"], ["a"]], order=2, unk="<UNK>")
    lm.write_arpa(tmp_path / "lm.arpa")
    syms = ["<eps>", "<UNK>", "a", "b", "#0", "<s>", "</s>"]
    (tmp_path / "words.txt").write_text("".join(f"{s} {i}\n" for i, s in enumerate(syms)))
    g = build_g_fst(tmp_path / "lm.arpa", tmp_path / "words.txt", tmp_path / "G.fst", order=2)
    assert (tmp_path / "G.fst").is_file() and g.is_ilabel_sorted
    ilabels = {a.ilabel for s in range(g.num_states) for a in _arcs(g, s)}
    assert 4 in ilabels  # #0 on backoff arcs
    assert not ilabels & {5, 6}  # <s> and </s> become epsilon / final weights
    res = transduce(g, [2, 3])  # "a b": p(a|<s>) p(b|a) p(</s>|b)
    assert res is not None and res[0] == [2, 3]
    assert res[1] == pytest.approx(-math.log(0.625 * 0.375 * 0.6875), abs=1e-4)


def _arcs(fst: kaldifst.StdVectorFst, state: int) -> list[kaldifst.StdArc]:
    it = kaldifst.ArcIterator(fst, state)
    out = []
    while not it.done:
        out.append(it.value)
        it.next()
    return out


def _brute_force_mkn(sents: list[list[str]], order: int, vocab: list[str], unk: str = "<unk>"):
    """Direct transcription of the interpolated MKN formulas, one probability at a time."""
    raw: Counter[tuple[str, ...]] = Counter()
    for s in sents:
        t = [BOS, *s, EOS]
        for j in range(1, len(t)):
            for i in range(max(0, j - order + 1), j + 1):
                raw[tuple(t[i : j + 1])] += 1
    words = sorted(set(vocab) | {w for s in sents for w in s} | {EOS, unk})

    def adj(g: tuple[str, ...]) -> int:
        if len(g) == order or g[0] == BOS:
            return raw[g]
        return sum(1 for e in raw if len(e) == len(g) + 1 and e[1:] == g)

    def discounts(n: int) -> tuple[float, float, float]:
        coc = Counter(adj(g) for g in raw if len(g) == n)
        return estimate_discounts(coc) or FALLBACK_DISCOUNTS

    ds = {n: discounts(n) for n in range(1, order + 1)}

    def p(w: str, h: tuple[str, ...]) -> float:
        n = len(h) + 1
        d = ds[n]
        a = {x: adj((*h, x)) for x in words}
        tot = sum(a.values())
        if tot == 0:
            return p(w, h[1:])
        gamma = sum(d[min(c, 3) - 1] for c in a.values() if c > 0) / tot
        lower = 1 / len(words) if not h else p(w, h[1:])
        return max(a[w] - (d[min(a[w], 3) - 1] if a[w] else 0), 0) / tot + gamma * lower

    return p, words


@pytest.mark.parametrize("order", [2, 3, 4])
def test_matches_brute_force_formulas(tmp_path: Path, order: int) -> None:
    sents = toy_corpus(n=120, seed=1)
    lm = train_mkn(sents, order=order, vocab=["雨"])
    lm.write_arpa(tmp_path / "lm.arpa")
    arpa = read_arpa(tmp_path / "lm.arpa")
    p, words = _brute_force_mkn(sents, order, ["雨"])
    rng = random.Random(order)
    hist_syms = [w for w in words if w not in (EOS, "<unk>")]
    for _ in range(60):
        h = tuple([BOS] * rng.randint(0, 1) + rng.choices(hist_syms, k=rng.randint(0, order - 1)))[
            -(order - 1) :
        ]
        h = h if order > 1 else ()
        w = rng.choice(words)
        assert 10 ** arpa.log10_prob(w, list(h)) == pytest.approx(p(w, h), rel=1e-5), (w, h)
