"""A user's ARPA LM made fit for a lang dir: OOV n-grams removed, optional entropy pruning.

* Words of the ARPA file that are not in the lang dir's words.txt are listed (Kaldi's
  ``utils/find_arpa_oovs.pl``: the unigrams outside words.txt, ``<s>``/``</s>`` aside) and
  every n-gram that contains one is removed, as Kaldi's ``utils/format_lm.sh`` has
  ``arpa2fst --read-symbol-table`` do. The probabilities of the remaining n-grams are kept
  as they are (no renormalisation), as in Kaldi.
* Entropy pruning (Stolcke 1998, as SRILM's ``ngram -prune``) is ``kaldingram``'s
  (k2-fsa's port of Kaldi's ``utils/lang/ngram_entropy_pruning.py``), not written here: an
  n-gram is dropped when removing it raises the model's perplexity by less than the
  relative threshold (e.g. 1e-7 keeps almost everything; 1e-5 prunes hard).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from steps_py.fileio import atomic_write_text
from steps_py.lang.ngram import BOS, EOS, NgramLM

log = logging.getLogger("lang.arpa_lm")


class NoLmWordsError(ValueError):
    """No word of the LM is in the lexicon; the message says what to do."""


def find_arpa_oovs(lm: NgramLM, words: set[str]) -> list[str]:
    """Unigrams of `lm` that are not in `words` (``<s>``/``</s>`` are never OOVs), sorted."""
    return sorted(w for w in lm.vocab if w not in words and w not in (BOS, EOS))


def remove_oov_ngrams(lm: NgramLM, oovs: set[str]) -> tuple[NgramLM, int]:
    """A copy of `lm` without the n-grams that contain a word of `oovs`; also the count removed."""
    keep = {g: p for g, p in lm.logprob.items() if not oovs.intersection(g)}
    out = NgramLM(
        order=lm.order,
        logprob=keep,
        backoff={g: b for g, b in lm.backoff.items() if g in keep},
        discounts=dict(lm.discounts),
    )
    return out, len(lm.logprob) - len(keep)


def fit_to_lang(lm: NgramLM, words: list[str], oov_list: Path) -> tuple[NgramLM, dict]:
    """`lm` without the n-grams that contain words outside `words` (the lang dir's words.txt),
    those words listed in `oov_list` and logged; also what to record."""
    oovs = find_arpa_oovs(lm, set(words))
    atomic_write_text(oov_list, "".join(f"{w}\n" for w in oovs))
    if not oovs:
        return lm, {"lm_oovs": 0, "removed_ngrams": 0}
    fitted, removed = remove_oov_ngrams(lm, set(oovs))
    shown = " ".join(oovs[:10]) + (" ..." if len(oovs) > 10 else "")
    log.warning(
        "%d words of the LM are not in the lexicon (%s; all in %s); the %d n-grams that "
        "contain them are removed (as Kaldi's format_lm.sh); add them to the lexicon to keep them",
        len(oovs),
        shown,
        oov_list,
        removed,
    )
    if not any(len(g) == 1 and g[0] not in (BOS, EOS) for g in fitted.logprob):
        raise NoLmWordsError(
            f"no word of the LM is in the lexicon ({len(oovs)} OOVs, see {oov_list}): "
            "a word LM needs a word lexicon (local.mandarin.prepare_dict --words FILE)"
        )
    return fitted, {"lm_oovs": len(oovs), "removed_ngrams": removed}


def prune_entropy(src: Path, dst: Path, threshold: float) -> list[int]:
    """Write `src` pruned with relative-entropy `threshold` to `dst`; the n-gram counts left.

    kaldingram 0.1.2 leaves the header count of an order it pruned empty unchanged (its
    ``update_counts`` skips zeros), so the counts are set from the entries here and empty
    top orders dropped; its progress bars are kept out of the log.
    """
    from kaldingram.prune import ArpaParser, prune

    parser = ArpaParser()
    with contextlib.redirect_stderr(io.StringIO()):
        lm = parser.loadf(str(src), encoding="utf-8")[0]
        before = [c for _, c in lm.counts()]
        prune(lm, threshold, 1)
        for order in list(lm._counts):
            lm._counts[order] = sum(len(ws) for ws in lm._ngrams[order - 1].values())
        while len(lm._counts) > 1 and lm._counts[max(lm._counts)] == 0:
            del lm._counts[max(lm._counts)]
        parser.dumpf(lm, str(dst), encoding="utf-8")
    after = [c for _, c in lm.counts()]
    log.info("entropy pruning at %g: n-grams per order %s -> %s", threshold, before, after)
    return after
