"""Decoder core shared by GMM and hybrid NN decoding: kaldi-hmm-gmm's LatticeFasterDecoder on HCLG.

    dec = WfstDecoder("exp/mono/graph", beam=13.0, lattice_beam=8.0, max_active=7000)
    dec.decode_loglikes(loglikes, lm_weights=[8, 10, 12])      # hybrid: [T, num_pdfs] columns = pdf ids
    dec.decode_gmm(feats, trans_model, am, lm_weights=[8, 10])  # GMM: features with deltas

kaldi-hmm-gmm returns only the best path (no lattice object), so the LM weight is swept by
decoding once per weight at acoustic scale 1 / lm_weight (what Kaldi's scoring does to a
lattice). Two searches are available: `decoder="lattice"` (LatticeFasterDecoder; beam,
lattice beam, max-active) and the default `decoder="faster"` (Kaldi's FasterDecoder; beam,
max-active). Both return the Viterbi best path within the beam; since the bindings hand back
no lattice, the lattice decoder's token-lattice bookkeeping buys nothing here and costs about
3x the time (measured on the synthetic corpus's HCLG with a hybrid DNN), so "faster" is the
default and "lattice" stays for comparison and for when lattices become reachable. Hybrid decoding uses HCLG_pdf.fst, whose input labels are pdf id + 1, with
DecodableCtc, which scores label i with column i - 1 of the scaled log-likelihoods.
"""

from __future__ import annotations

import logging
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

from steps_py.gmm.model_io import monophone_tree, read_topology

log = logging.getLogger(__name__)


class GraphError(ValueError):
    """A graph dir is incomplete; the message names the file and the command that builds it."""


def read_word_table(path: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                out[int(parts[1])] = parts[0]
    return out


class WfstDecoder:
    """Best-path Viterbi beam search over an HCLG graph dir written by steps_py.decode.graph."""

    def __init__(self, graph_dir: Path, beam: float = 13.0, lattice_beam: float = 8.0, max_active: int = 7000,
                 decoder: str = "faster"):
        if decoder not in ("faster", "lattice"):
            raise ValueError(f"decoder must be 'faster' or 'lattice', not {decoder!r}")
        self.search = decoder
        self.graph_dir = Path(graph_dir)
        for name in ("HCLG.fst", "words.txt", "num_pdfs", "topo"):
            if not (self.graph_dir / name).is_file():
                raise GraphError(f"{self.graph_dir}/{name} missing: build the graph with `python -m steps_py.decode.graph`")
        self.config = khg.LatticeFasterDecoderConfig(beam=beam, max_active=max_active, lattice_beam=lattice_beam, determinize_lattice=False)
        self.faster_config = khg.FasterDecoderOptions()
        self.faster_config.beam = beam
        self.faster_config.max_active = max_active
        self.words = read_word_table(self.graph_dir / "words.txt")
        self.num_pdfs = int((self.graph_dir / "num_pdfs").read_text().split()[0])
        topo = read_topology((self.graph_dir / "topo").read_text())
        self._tree = monophone_tree(topo)
        self._tm = khg.TransitionModel(ctx_dep=self._tree, hmm_topo=topo)  # only labels matter here
        self._fsts: dict[str, kaldifst.StdVectorFst] = {}
        self._decoders: dict[str, khg.LatticeFasterDecoder | khg.FasterDecoder] = {}

    def _decoder(self, name: str) -> khg.LatticeFasterDecoder | khg.FasterDecoder:
        if name not in self._decoders:
            path = self.graph_dir / name
            if not path.is_file():
                raise GraphError(f"{path} missing: rebuild the graph with `python -m steps_py.decode.graph --force`")
            self._fsts[name] = kaldifst.StdVectorFst.read(str(path))
            if self.search == "faster":
                self._decoders[name] = khg.FasterDecoder(self._fsts[name], self.faster_config)
            else:
                self._decoders[name] = khg.LatticeFasterDecoder(self._fsts[name], self.config)
        return self._decoders[name]

    def _run(self, decoder: khg.LatticeFasterDecoder | khg.FasterDecoder, decodable: khg.DecodableInterface, tm: khg.TransitionModel, utt: str) -> list[int]:
        if isinstance(decoder, khg.FasterDecoder):
            decoder.decode(decodable)
            ok, best = decoder.get_best_path()  # falls back to non-final tokens when none is final
            if not ok:
                return []
            _, _, words, _ = kaldifst.get_linear_symbol_sequence(best)
            return [int(w) for w in words if w != 0]
        ok, _, words, _ = khg.decode_utterance_lattice_faster(decoder=decoder, decodable=decodable, trans_model=tm, utt=utt, allow_partial=True)
        return [int(w) for w in words] if ok else []

    def decode_loglikes(self, loglikes: np.ndarray, lm_weights: list[float], utt: str = "utt") -> dict[float, list[int]]:
        """Hybrid decoding of pdf log-likelihoods [T, num_pdfs]; word ids of the best path per LM weight."""
        loglikes = np.asarray(loglikes, dtype=np.float32)
        if loglikes.ndim != 2 or loglikes.shape[1] != self.num_pdfs:
            raise ValueError(f"{utt}: log-likelihoods have shape {loglikes.shape}, the graph needs (T, {self.num_pdfs})")
        decoder = self._decoder("HCLG_pdf.fst")
        out: dict[float, list[int]] = {}
        for w in lm_weights:
            decodable = khg.DecodableCtc(np.ascontiguousarray(loglikes / float(w)))
            out[w] = self._run(decoder, decodable, self._tm, utt)
        return out

    def decode_gmm(self, feats: np.ndarray, tm: khg.TransitionModel, am: khg.AmDiagGmm, lm_weights: list[float], utt: str = "utt") -> dict[float, list[int]]:
        """GMM decoding of features (with deltas) on HCLG.fst; word ids of the best path per LM weight."""
        decoder = self._decoder("HCLG.fst")
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        out: dict[float, list[int]] = {}
        for w in lm_weights:
            decodable = khg.DecodableAmDiagGmmScaled(am=am, tm=tm, feats=feats, scale=1.0 / float(w))
            out[w] = self._run(decoder, decodable, tm, utt)
        return out

    def words_of(self, ids: list[int]) -> list[str]:
        return [self.words.get(i, f"<id{i}>") for i in ids]
