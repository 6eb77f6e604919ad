"""The toy lang and corpus aligned by a briefly trained monophone GMM (triphone tests' input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steps_py.gmm.align import align_utterances
from steps_py.gmm.feats import add_deltas
from steps_py.gmm.jobs import AlignOptions, Utterance
from steps_py.gmm.model_io import save_model
from steps_py.gmm.topo import Lang
from steps_py.gmm.train_mono import train
from tests.toy_gmm import make_toy_lang, toy_corpus


def toy_mono_alignments(
    d: Path, n_utts: int = 30
) -> tuple[Lang, list[Utterance], dict[str, np.ndarray], Path]:
    """(lang, utterances, monophone alignments, monophone final.npz) under `d`."""
    lang = Lang.load(make_toy_lang(d / "lang"))
    utts = [Utterance(u, add_deltas(x), lang.word_ids(w)[0]) for u, w, x, _ in toy_corpus(n_utts)]
    model, _, _ = train(lang, utts, nj=1, num_iters=6, max_gauss=40)
    save_model(d / "final.npz", model)
    alis, failed, _ = align_utterances(lang, d / "final.npz", utts, 1, AlignOptions())
    assert len(failed) <= 1, failed
    return lang, utts, alis, d / "final.npz"
