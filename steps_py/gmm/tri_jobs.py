"""Triphone training graphs, alignment and statistics for one share of the data (a job of
``steps_py.gmm.jobs.JobPool``), as compile-train-graphs + gmm-align-compiled + gmm-acc-stats-ali
do for a context-dependent model.

Training graph of an utterance: L o words, Kaldi's context composition (kaldifst
``compose_context``), the project's H with self-loops (``steps_py.decode.h_transducer``),
determinized. Its input labels are compact (1..K, one per transition id the utterance can
use), so the aligner's log-likelihood matrix has K columns, not one per transition id of the
model; kaldi-hmm-gmm's aligner runs on it through ``DecodableCtc`` (column k - 1 for label
k), with the alignment weights (``transition_weights(mkgraph=False)``) composed in per pass.
"""

from __future__ import annotations

import math

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from steps_py.decode.h_transducer import (
    WindowHmms,
    h_transducer,
    transition_weights,
    weight_fst,
)
from steps_py.gmm.accumulate import GmmStats, accumulate, component_loglikes
from steps_py.gmm.jobs import AlignOptions, PassResult, Utterance, align_compiled
from steps_py.gmm.model_io import GmmParams
from steps_py.gmm.topo import Lang
from steps_py.kaldi.transition_model import TransitionModel
from steps_py.kaldi.tree import ContextDependency


def compile_train_graph(
    lex: kaldifst.StdVectorFst,
    tree: ContextDependency,
    tm: TransitionModel,
    word_ids: list[int],
    hmms: WindowHmms | None = None,
) -> tuple[kaldifst.StdVectorFst, np.ndarray]:
    """(graph with compact input labels, the transition id of each label 1..K); `hmms` as
    ``h_transducer`` takes it, to share between the utterances."""
    words = kaldifst.make_linear_acceptor(word_ids)
    phone2word = kaldifst.compose(lex, words, connect=True)
    clg, ilabels = kaldifst.compose_context(
        disambig_syms=[],
        context_width=tree.context_width,
        central_position=tree.central_position,
        ifst=phone2word,
    )
    kaldifst.arcsort(clg, sort_type="ilabel")
    h, tids = h_transducer(ilabels, tree, tm, compact=True, hmms=hmms)
    kaldifst.arcsort(h, sort_type="olabel")
    graph = kaldifst.compose(h, clg, connect=True)
    kaldifst.determinize_star(graph, use_log=True)
    kaldifst.arcsort(graph, sort_type="ilabel")
    return graph, np.asarray(tids, dtype=np.int64)


class FlatGmm:
    """The Gaussians of all pdfs of a GMM in flat float64 arrays (weights, means, variances),
    for gathering any pdfs' Gaussians per utterance without rebuilding lists of arrays."""

    def __init__(self, gmm: GmmParams) -> None:
        self.counts = np.array([len(w) for w in gmm.weights])
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.weights = np.concatenate(gmm.weights).astype(np.float64)
        self.means = np.concatenate(gmm.means).astype(np.float64)
        self.variances = np.concatenate(gmm.variances).astype(np.float64)

    def rows(self, pdfs: np.ndarray) -> np.ndarray:
        """The rows of the Gaussians of `pdfs`, pdf after pdf."""
        counts = self.counts[pdfs]
        first = np.cumsum(counts) - counts
        return np.arange(counts.sum()) - np.repeat(first - self.offsets[pdfs], counts)


def pdf_loglikes_subset(x: np.ndarray, gmm: GmmParams | FlatGmm, pdfs: np.ndarray) -> np.ndarray:
    """[T, len(pdfs)] log-likelihoods of the listed pdfs (all their Gaussians in one product)."""
    flat = gmm if isinstance(gmm, FlatGmm) else FlatGmm(gmm)
    rows = flat.rows(np.asarray(pdfs))
    comp = component_loglikes(x, flat.weights[rows], flat.means[rows], flat.variances[rows])
    counts = flat.counts[pdfs]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    mx = np.maximum.reduceat(comp, starts, axis=1)
    s = np.add.reduceat(np.exp(comp - np.repeat(mx, counts, axis=1)), starts, axis=1)
    return mx + np.log(s)


class TriJob:
    """Graphs and current alignments of a share of the utterances (see the module docstring)."""

    def __init__(
        self,
        lang_dir: str,
        utts: list[Utterance],
        tree: ContextDependency,
        tm: TransitionModel,
        alis: dict[str, np.ndarray],
    ) -> None:
        lang = Lang.load(lang_dir)
        lex = lang.read_fst("L.fst")
        kaldifst.arcsort(lex, sort_type="olabel")
        self.tm, self.utts = tm, utts
        hmms = WindowHmms(tree, tm)
        self.graphs = {u.utt: compile_train_graph(lex, tree, tm, u.word_ids, hmms) for u in utts}
        self.ali = {u.utt: alis[u.utt] for u in utts if u.utt in alis}
        sil = set(lang.silence_phones)
        self.sil_pdfs = {t.forward_pdf for t in tm.tuples if t.phone in sil}

    def realign(
        self, gmm: GmmParams, log_probs: np.ndarray, opts: AlignOptions
    ) -> tuple[list[str], int]:
        """gmm-align-compiled over this job; returns (failed utterances, number retried)."""
        tm = TransitionModel(self.tm.topo, self.tm.tuples, log_probs)
        costs = transition_weights(tm, opts.transition_scale, opts.self_loop_scale, mkgraph=False)
        cfg = khg.AlignConfig(beam=opts.beam, retry_beam=opts.retry_beam, careful=opts.careful)
        boost = math.log(opts.boost_silence)
        failed: list[str] = []
        retried = 0
        flat = FlatGmm(gmm)
        for u in self.utts:
            graph, tids = self.graphs[u.utt]
            w = weight_fst(np.concatenate([[0.0], costs[tids]]))
            fst = kaldifst.compose(w, graph, connect=True)
            pdfs, col = np.unique(tm.tid2pdf[tids], return_inverse=True)
            ll = pdf_loglikes_subset(u.feats, flat, pdfs)
            if boost:
                ll[:, [k for k, j in enumerate(pdfs) if j in self.sil_pdfs]] += boost
            mat = (ll[:, col] * opts.acoustic_scale).astype(np.float32)
            ali, ret, _ = align_compiled(cfg, u, fst, khg.DecodableCtc(mat), opts.acoustic_scale)
            retried += ret
            if ali is None:
                failed.append(u.utt)
                self.ali.pop(u.utt, None)
                continue
            self.ali[u.utt] = tids[ali - 1].astype(np.int32)
        return failed, retried

    def run_pass(
        self, gmm: GmmParams, log_probs: np.ndarray, realign: bool, opts: AlignOptions
    ) -> PassResult:
        res = PassResult(GmmStats.zeros(gmm), np.zeros(self.tm.num_transition_ids + 1))
        if realign:
            res.failed, res.retried = self.realign(gmm, log_probs, opts)
        aligned = [u for u in self.utts if u.utt in self.ali]
        if not aligned:
            return res
        feats = np.concatenate([u.feats for u in aligned])
        tids = np.concatenate([self.ali[u.utt] for u in aligned])
        res.tid_counts = np.bincount(tids, minlength=self.tm.num_transition_ids + 1).astype(float)
        res.loglike = accumulate(feats, self.tm.tid2pdf[tids], gmm, res.stats)
        res.frames = len(tids)
        return res

    def alignments(self) -> dict[str, np.ndarray]:
        return dict(self.ali)
