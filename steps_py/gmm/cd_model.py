"""Context-dependent (triphone) GMM models on disk: Kaldi's ``final.mdl`` beside a ``tree``.

The project writes its triphone models in Kaldi's own formats (``steps_py.kaldi``), so
Kaldi reads them as they are and Kaldi's triphone models load here the same way.
``find_cd_model`` tells a context-dependent model dir (or final.mdl) from the monophone
ones that ``steps_py.gmm.model_io.read_model`` loads; ``read_cd_model`` reads the model
and checks that the tree defines exactly the model's transition states.
"""

from __future__ import annotations

from pathlib import Path

from steps_py.gmm.model_io import ModelError
from steps_py.kaldi.model_file import KaldiGmmModel, is_kaldi_model_file, read_kaldi_model
from steps_py.kaldi.stream import KaldiFormatError
from steps_py.kaldi.transition_model import TransitionModel
from steps_py.kaldi.tree import ContextDependency, read_tree


def find_cd_model(path: Path) -> tuple[Path, Path] | None:
    """(final.mdl, tree) if `path` (a dir or a final.mdl) is a context-dependent model, else None."""
    p = Path(path)
    mdl, tree = (p / "final.mdl", p / "tree") if p.is_dir() else (p, p.parent / "tree")
    if p.is_dir() and (p / "final.npz").is_file():
        return None
    if not (is_kaldi_model_file(mdl) and tree.is_file()):
        return None
    try:
        return None if read_tree(tree).is_monophone() else (mdl, tree)
    except KaldiFormatError as e:
        raise ModelError(f"{tree}: {e}") from None


def read_cd_model(mdl: Path, tree_path: Path) -> tuple[KaldiGmmModel, ContextDependency]:
    """The model and its tree; raises ModelError if they do not belong together."""
    try:
        model = read_kaldi_model(mdl)
        tree = read_tree(tree_path)
        tm = model.transition_model
        if tm.is_hmm() and TransitionModel.from_tree(tree, tm.topo).tuples != tm.tuples:
            raise ModelError(
                f"{tree_path} does not belong to {mdl}: the transition states it defines differ"
            )
    except KaldiFormatError as e:
        raise ModelError(f"{mdl}: {e}") from None
    return model, tree
