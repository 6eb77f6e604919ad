"""What the GMM stage reads from a lang dir: symbol tables, topology, lexicon FSTs.

Also turns a transcript into word ids (out-of-lexicon words map to the OOV word, and
are counted) and builds kaldi-hmm-gmm's training-graph compiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst

from steps_py.gmm.model_io import monophone_tree, read_topology
from steps_py.lang.lang_dir import LangDir, LangError
from steps_py.lang.symbols import SymbolTableError, read_symbol_table

__all__ = ["GraphCompiler", "Lang", "LangError", "read_symbols"]


def read_symbols(path: Path) -> dict[str, int]:
    """A symbol table as {symbol: id} (`steps_py.lang.symbols.read_symbol_table`)."""
    try:
        return dict(read_symbol_table(path))
    except SymbolTableError as e:
        raise LangError(str(e)) from None


def _read_ints(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.is_file() else []


@dataclass
class Lang:
    """A Kaldi lang dir as the GMM code needs it."""

    dir: Path
    phones: dict[str, int]
    words: dict[str, int]
    topo_text: str
    disambig_phones: list[int]
    silence_phones: list[int]
    oov_word: str
    word_of_id: dict[int, str] = field(default_factory=dict)

    @classmethod
    def load(cls, d: Path) -> Lang:
        d = Path(d)
        ld = LangDir(d)
        ld.check()
        phones = read_symbols(d / ld.PHONES)
        words = read_symbols(d / ld.WORDS)
        oov = (d / ld.OOV).read_text().strip() if (d / ld.OOV).is_file() else "<UNK>"
        if oov not in words:
            raise LangError(f"{d}: OOV word {oov!r} (oov.txt) is not in words.txt")
        disambig = _read_ints(d / ld.DISAMBIG_INT) or [
            i for p, i in phones.items() if p.startswith("#")
        ]
        silence = _read_ints(d / ld.SILENCE_INT) or [
            phones[p] for p in ("SIL", "SPN") if p in phones
        ]
        return cls(
            d,
            phones,
            words,
            (d / ld.TOPO).read_text(),
            sorted(disambig),
            sorted(silence),
            oov,
            {i: w for w, i in words.items()},
        )

    def word_ids(self, tokens: list[str]) -> tuple[list[int], int]:
        """Map transcript tokens to word ids; returns (ids, number of tokens mapped to the OOV word)."""
        oov_id = self.words[self.oov_word]
        ids = [self.words.get(t, oov_id) for t in tokens]
        return ids, sum(1 for t in tokens if t not in self.words)

    def read_fst(self, name: str) -> kaldifst.StdVectorFst:
        return kaldifst.StdVectorFst.read(str(LangDir(self.dir).file(name)))

    def topology(self) -> khg.HmmTopology:
        return read_topology(self.topo_text)


class GraphCompiler:
    """Kaldi's compile-train-graphs: L.fst (olabel-sorted), monophone tree, disambig phones.

    The C++ compiler keeps pointers to the lexicon, tree and transition model, so this
    object owns them for as long as it lives.
    """

    def __init__(self, lang: Lang):
        self.topo = lang.topology()
        self.tree = monophone_tree(self.topo)
        self.tm = khg.TransitionModel(ctx_dep=self.tree, hmm_topo=self.topo)
        self.lex = lang.read_fst("L.fst")
        kaldifst.arcsort(self.lex, sort_type="olabel")
        self.opts = khg.TrainingGraphCompilerOptions(
            transition_scale=1.0, self_loop_scale=1.0, reorder=True
        )
        self.compiler = khg.TrainingGraphCompiler(
            trans_model=self.tm,
            ctx_dep=self.tree,
            lex_fst=self.lex,
            disambig_syms=lang.disambig_phones,
            opts=self.opts,
        )

    def compile(self, word_ids: list[int]) -> kaldifst.StdVectorFst:
        return self.compiler.compile_graph_from_text(word_ids)
