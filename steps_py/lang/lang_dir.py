"""A lang dir as later steps read it: `LangDir`, written by ``python -m steps_py.lang.prepare``
(Kaldi's ``utils/prepare_lang.sh``; ``python -m steps_py.kaldi.lang_import`` makes one from a
Kaldi lang dir). The layout is in docs/INTERFACES.md; `steps_py.gmm.topo.Lang` loads what the
GMM, graph and alignment steps need through this class, and a missing file is a `LangError`
that names the command that writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PRODUCER = "python -m steps_py.lang.prepare"


class LangError(ValueError):
    """A lang dir is incomplete; the message names the missing file and the step that writes it."""


@dataclass(frozen=True)
class LangDir:
    path: Path

    PHONES, WORDS, TOPO, OOV, OOV_INT = "phones.txt", "words.txt", "topo", "oov.txt", "oov.int"
    L, L_DISAMBIG = "L.fst", "L_disambig.fst"
    LEXICONP, LEXICONP_DISAMBIG = "lexiconp.txt", "lexiconp_disambig.txt"
    DISAMBIG_INT, SILENCE_INT = "phones/disambig.int", "phones/silence.int"
    REQUIRED = (PHONES, WORDS, TOPO, L)  # what every reader needs
    FILES = (
        PHONES,
        WORDS,
        TOPO,
        L,
        L_DISAMBIG,
        OOV,
        OOV_INT,
        LEXICONP,
        LEXICONP_DISAMBIG,
        "phones/<set>.{txt,int,csl}",
        "phones/align_lexicon.{txt,int}",
    )

    def file(self, name: str) -> Path:
        """The path of `name`; a LangError naming the lang command when it is missing."""
        p = Path(self.path) / name
        if not p.is_file():
            raise LangError(f"{p} is missing: run `{PRODUCER}` first")
        return p

    def check(self) -> None:
        for name in self.REQUIRED:
            self.file(name)
