"""The search, shared by GMM and NN decoding: HCLG.fst and pdf log-likelihoods in, a word
lattice (or the best path) out.

    search = Search(graph_dir, SearchConfig(beam=13, lattice_beam=6, max_active=7000), num_pdfs)
    lat, t = search.lattice(loglikes)      # loglikes: [T, num_pdfs] float32, unscaled
    words, t = search.best_path(loglikes)  # Viterbi best path only (Kaldi's FasterDecoder)

Lattices come from Kaldi's ``LatticeFasterDecoder`` (beam, lattice beam, max-active), compiled
in kaldi-hmm-gmm and reached through ``steps_py.decode.lattice_faster``; its raw state-level
lattice is turned into a word-level CompactLattice by ``steps_py.decode.lattice.determinize``.
``SearchConfig(decoder="simple")`` (or a failed self-test of the binding) uses kaldi-decoder
0.2.11's ``LatticeSimpleDecoder`` instead, which has no max-active. ``best_path`` runs
kaldi-decoder's ``FasterDecoder`` (beam, max-active) for ``--no-lattices``. The graph's input
labels are transition ids; ``DecodableCtc`` scores label ``i`` with column ``i - 1``, so the
log-likelihoods are expanded from pdfs to transition ids (``loglikes[:, tid2pdf]``) and
multiplied by the acoustic scale. Lattices therefore hold real transition ids, as Kaldi's do.

Import order: kaldifst and kaldi_hmm_gmm before kaldi_decoder (the other order deadlocks in
kaldifst's static initialisation).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

# isort: split
import kaldi_decoder as kd  # after kaldifst and kaldi_hmm_gmm: the other order deadlocks

from steps_py.decode.inputs import GraphError, read_graph_fst
from steps_py.decode.lattice import CompactLattice, RawLattice, determinize, scratch_file, warm_up
from steps_py.decode.lattice_faster import LatticeFasterSearch
from steps_py.gmm.model_io import monophone_tree, read_topology


@dataclass(frozen=True)
class SearchConfig:
    """Beam settings (Kaldi's names and defaults). ``max_active`` bounds the tokens expanded
    per frame of the lattice search (``decoder="faster"``) and of the best-path search."""

    beam: float = 13.0
    lattice_beam: float = 6.0
    acoustic_scale: float = 0.1
    max_active: int = 7000
    pdf_beam: float = 0.0  # > 0: per frame, pdfs more than this many nats below the best are pruned
    lattices: bool = True  # False: best path only (FasterDecoder), one pass per LM weight
    decoder: str = "faster"  # lattice search: "faster" (LatticeFasterDecoder) or "simple"


@dataclass
class Timing:
    """Seconds spent per part, summed over utterances."""

    forward: float = 0.0  # acoustic model (network forward or GMM likelihoods)
    search: float = 0.0  # the decoder's token passing
    lattice: float = 0.0  # getting the raw lattice out of the decoder
    determinize: float = 0.0
    score: float = 0.0  # best paths, oracle, N-best from the word lattice
    frames: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def add(self, other: Timing) -> None:
        for k in ("forward", "search", "lattice", "determinize", "score"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.frames += other.frames

    @property
    def total(self) -> float:
        return self.forward + self.search + self.lattice + self.determinize + self.score


def transition_to_pdf(graph_dir: Path, num_pdfs: int) -> np.ndarray:
    """pdf id of each transition id 1..N (index tid - 1): the graph dir's ``tid2pdf`` (written
    by ``steps_py.decode.graph``, needed for a triphone graph), or for an older monophone graph
    dir without it, derived from its topology."""
    graph_dir = Path(graph_dir)
    listed = graph_dir / "tid2pdf"
    if listed.is_file():
        try:
            tid2pdf = np.loadtxt(listed, dtype=np.int64, ndmin=1)
        except ValueError:
            raise GraphError(
                f"{listed} is not one integer per line; rebuild the graph "
                "(python -m steps_py.decode.graph --force)"
            ) from None
        found = int(tid2pdf.max()) + 1 if tid2pdf.size else 0
    else:
        topo = read_topology((graph_dir / "topo").read_text(encoding="utf-8"))
        tm = khg.TransitionModel(ctx_dep=monophone_tree(topo), hmm_topo=topo)
        tid2pdf = np.asarray(tm.transition_id_to_pdf_array(), dtype=np.int64)[1:]
        found, listed = tm.num_pdfs, graph_dir / "topo"
    if found != num_pdfs or (tid2pdf.size and tid2pdf.min() < 0):
        raise GraphError(
            f"{listed} gives {found} pdfs but {graph_dir}/num_pdfs says {num_pdfs}; rebuild "
            "the graph (python -m steps_py.decode.graph --force)"
        )
    return tid2pdf


class Search:
    """One graph, loaded once; decodes any number of utterances of any number of models."""

    def __init__(self, graph_dir: Path, cfg: SearchConfig, num_pdfs: int) -> None:
        self.graph_dir = Path(graph_dir)
        self.cfg = cfg
        self.num_pdfs = num_pdfs
        self.fst = read_graph_fst(self.graph_dir / "HCLG.fst")
        self.tid2pdf = transition_to_pdf(self.graph_dir, num_pdfs)
        self._lattice_faster: LatticeFasterSearch | None = None
        self._lattice_simple: kd.LatticeSimpleDecoder | None = None
        if cfg.decoder == "faster":
            self._lattice_faster = LatticeFasterSearch(
                self.fst, cfg.beam, cfg.lattice_beam, cfg.max_active
            )
        elif cfg.decoder == "simple":
            lc = kd.LatticeSimpleDecoderConfig()
            lc.beam, lc.lattice_beam = cfg.beam, cfg.lattice_beam
            lc.determinize_lattice = False
            self._lattice_simple = kd.LatticeSimpleDecoder(self.fst, lc)
        else:
            raise ValueError(f"unknown lattice decoder {cfg.decoder!r} (faster or simple)")
        self._faster: kd.FasterDecoder | None = None  # built at the first best_path
        self._tmp = scratch_file()  # the raw lattice's way from C++ to Python, one per search
        warm_up()  # compile determinization's loops now, not inside the first utterance's timing

    def __del__(self) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)

    def _scaled(self, loglikes: np.ndarray, acoustic_scale: float | None = None) -> np.ndarray:
        """Scaled log-likelihoods per transition id (column i = transition id i + 1)."""
        ll = np.asarray(loglikes, dtype=np.float32)
        if ll.ndim != 2 or ll.shape[1] != self.num_pdfs:
            raise ValueError(
                f"log-likelihoods have shape {ll.shape}, the graph needs (T, {self.num_pdfs})"
            )
        if ll.shape[0] == 0:
            raise ValueError("no frames")
        if not np.isfinite(ll).all():
            raise ValueError("log-likelihoods contain NaN or inf")
        scaled = ll * np.float32(
            self.cfg.acoustic_scale if acoustic_scale is None else acoustic_scale
        )
        if self.cfg.pdf_beam > 0:  # pushed out of the beam, not removed: a path always exists
            low = ll < ll.max(axis=1, keepdims=True) - np.float32(self.cfg.pdf_beam)
            scaled[low] -= np.float32(self.cfg.beam + 1.0)
        return np.ascontiguousarray(scaled[:, self.tid2pdf])

    def raw_lattice(self, loglikes: np.ndarray) -> tuple[RawLattice, Timing]:
        """The decoder's state-level lattice of one utterance (acoustic costs at the decoding
        scale); ``Timing.extra["partial"] == 1`` when it reached no final state of the graph."""
        t = Timing(frames=int(loglikes.shape[0]))
        scaled = self._scaled(loglikes)
        t0 = time.process_time()
        if self._lattice_faster is not None:
            res = self._lattice_faster.decode(scaled)
            raw, partial = res.lattice, not res.reached_final
        else:
            assert self._lattice_simple is not None
            self._lattice_simple.decode(kd.DecodableCtc(scaled))
            ok, raw = self._lattice_simple.get_raw_lattice()
            if not ok:
                raise RuntimeError("the decoder produced no lattice (no path within the beam)")
            partial = False
        t1 = time.process_time()
        if raw.num_states == 0:
            raise RuntimeError("the decoder produced no lattice (no path within the beam)")
        rl = RawLattice.from_kaldifst(raw, self._tmp)
        t.search, t.lattice = t1 - t0, time.process_time() - t1
        t.extra["raw_arcs"] = float(rl.num_arcs)
        t.extra["partial"] = float(partial)
        return rl, t

    def lattice(self, loglikes: np.ndarray) -> tuple[CompactLattice, Timing]:
        """Word lattice of one utterance (acoustic costs unscaled, as on disk). A decode that
        reached no final state of the graph is kept (``Timing.extra["partial"] == 1``)."""
        rl, t = self.raw_lattice(loglikes)
        t0 = time.process_time()
        lat = determinize(rl, self.cfg.lattice_beam, self.cfg.acoustic_scale)
        t.determinize = time.process_time() - t0
        if lat.num_states == 0:
            raise RuntimeError("the lattice has no complete path")
        return lat, t

    def best_path(
        self, loglikes: np.ndarray, acoustic_scale: float | None = None
    ) -> tuple[list[int], Timing]:
        """Word ids of the Viterbi best path (FasterDecoder: beam and max-active), at the
        config's acoustic scale or the one given (1 / LM weight for a best-path LM-weight sweep)."""
        t = Timing(frames=int(loglikes.shape[0]))
        decodable = kd.DecodableCtc(self._scaled(loglikes, acoustic_scale))
        if self._faster is None:
            fo = kd.FasterDecoderOptions()
            fo.beam, fo.max_active = self.cfg.beam, self.cfg.max_active
            fo.min_active = min(fo.min_active, self.cfg.max_active - 1)
            self._faster = kd.FasterDecoder(self.fst, fo)
        t0 = time.process_time()
        self._faster.decode(decodable)
        ok, best = self._faster.get_best_path()
        t.search = time.process_time() - t0
        if not ok:
            raise RuntimeError("the decoder found no path within the beam")
        _, _, words, _ = kaldifst.get_linear_symbol_sequence(best)
        return [int(w) for w in words if w != 0], t
