"""Kaldi's ``LatticeFasterDecoder`` (beam, max-active, lattice beam) with its raw lattice, from
the kaldi-hmm-gmm wheel the project pins.

    search = LatticeFasterSearch(hclg, beam=13, lattice_beam=6, max_active=7000)
    raw = search.decode(scaled)   # scaled: [T, num_transition_ids] float32, column i = tid i + 1
    raw.lattice                   # kaldifst.Lattice: Kaldi's raw state-level lattice
    raw.reached_final             # False: a partial decode (see below)

Why a binding layer: kaldi-hmm-gmm 1.1.4 compiles Kaldi's ``LatticeFasterDecoderTpl`` and binds
the class and ``decode_utterance_lattice_faster``, but that function returns only the best
path; the lattice stays inside the decoder. Its shared library
(``kaldi_hmm_gmm/lib/libkaldi-hmm-gmm-core.so``) exports the member functions that get it out
(``Decode``, ``ReachedFinal``, ``NumFramesDecoded``, ``GetRawLattice``), so we call them with
``ctypes`` by their mangled names (``_SYMBOLS``), on the C++ objects behind the pybind11
objects: a pybind11 instance of a class with a simple layout holds the pointer to its C++
value right after ``PyObject_HEAD`` (``_cpp_pointer``). The lattice is written into a
``kaldifst.Lattice`` (``fst::VectorFst<LatticeArc>``), a type kaldifst 1.7.17 shares with
kaldi-hmm-gmm 1.1.4 (the decoder's constructor already takes kaldifst's ``StdVectorFst``).
No compiler is needed at install time.

What keeps it safe:

* exact pins of both wheels (``pyproject.toml``); a missing symbol is a ``BindingError``;
* the pybind constructor keeps only a reference to the C++ graph, so ``LatticeFasterSearch``
  holds the Python ``StdVectorFst`` for as long as the decoder lives;
* ``check_binding()`` runs ``self_test()`` once per process, in a child process (a crash there
  cannot take the caller down): on a small graph built in code, the word lattice from this
  decoder (determinized by ``steps_py.decode.lattice.determinize``) must equal the one from
  kaldi-decoder's ``LatticeSimpleDecoder`` (same words, states, alignments; costs to 1e-3).
  If the test fails, decoding falls back to ``LatticeSimpleDecoder`` (no max-active) with a
  warning that says why (``resolve_decoder``).

Partial decodes: when no token reaches a final state of the graph at the last frame, Kaldi's
``GetRawLattice`` treats every surviving token as final (what Kaldi's ``--allow-partial=true``
keeps). We keep that lattice, mark the result ``reached_final=False``, and the decode counts
and names such utterances (``partial`` in ``summary.json`` and a warning); they are scored
like any other hypothesis.
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import kaldi_hmm_gmm as khg
import kaldifst
import numpy as np

log = logging.getLogger("decode")

PINNED = {"kaldi-hmm-gmm": "1.1.4", "kaldifst": "1.7.17"}

# LatticeFasterDecoderTpl<fst::VectorFst<StdArc>, decoder::StdToken>, the class behind
# khg.LatticeFasterDecoderStdVectorFst
_CLASS = (
    "3khg23LatticeFasterDecoderTplIN3fst9VectorFstINS1_6ArcTplINS1_17TropicalWeightTplIfEEEE"
    "NS1_11VectorStateIS6_SaIS6_EEEEENS_7decoder8StdTokenEE"
)
_LATTICE_ARG = "PNS2_INS3_INS1_16LatticeWeightTplIfEEEENS7_ISG_SaISG_EEEEE"
_P, _B, _I = ctypes.c_void_p, ctypes.c_bool, ctypes.c_int32
_SYMBOLS: dict[str, tuple[str, type, list[type]]] = {
    "decode": (f"_ZN{_CLASS}6DecodeEPNS_18DecodableInterfaceE", _B, [_P, _P]),
    "reached_final": (f"_ZNK{_CLASS}12ReachedFinalEv", _B, [_P]),
    "num_frames": (f"_ZNK{_CLASS}16NumFramesDecodedEv", _I, [_P]),
    "raw_lattice": (f"_ZNK{_CLASS}13GetRawLatticeE{_LATTICE_ARG}b", _B, [_P, _P, _B]),
}
_PYOBJECT_HEAD = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)


class BindingError(RuntimeError):
    """The installed kaldi-hmm-gmm does not offer what this layer calls."""


def library_path() -> Path:
    return Path(khg.__file__).parent / "lib" / "libkaldi-hmm-gmm-core.so"


_FUNCS: dict[str, ctypes._CFuncPtr] = {}


def _functions() -> dict[str, ctypes._CFuncPtr]:
    if not _FUNCS:
        try:
            lib = ctypes.CDLL(str(library_path()))
        except OSError as e:
            raise BindingError(f"cannot load {library_path()}: {e}") from None
        for key, (name, restype, argtypes) in _SYMBOLS.items():
            try:
                fn = getattr(lib, name)
            except AttributeError:
                raise BindingError(
                    f"{library_path()} does not export LatticeFasterDecoderTpl::{key} "
                    f"(kaldi-hmm-gmm {_version('kaldi-hmm-gmm')}; pinned {PINNED['kaldi-hmm-gmm']})"
                ) from None
            fn.restype, fn.argtypes = restype, argtypes
            _FUNCS[key] = fn
    return _FUNCS


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _cpp_pointer(obj: object, type_name: str) -> int:
    """The C++ object behind a pybind11 instance (simple layout: the value pointer follows
    ``PyObject_HEAD``)."""
    if type(obj).__name__ != type_name:
        raise BindingError(f"expected a {type_name}, got {type(obj).__name__}")
    ptr = ctypes.c_void_p.from_address(id(obj) + _PYOBJECT_HEAD).value
    if not ptr:
        raise BindingError(f"{type_name} object holds no C++ value")
    return ptr


@dataclass
class RawResult:
    lattice: kaldifst.Lattice  # raw state-level lattice, acoustic costs at the decoding scale
    reached_final: bool
    frames: int


class LatticeFasterSearch:
    """One decoder on one graph; ``decode`` may be called for any number of utterances."""

    def __init__(
        self,
        fst: kaldifst.StdVectorFst,
        beam: float,
        lattice_beam: float,
        max_active: int,
        min_active: int = 200,
    ) -> None:
        self._fns = _functions()
        self._fst = fst  # kept alive: the C++ decoder holds only a reference to it
        cfg = khg.LatticeFasterDecoderConfig()
        cfg.beam, cfg.lattice_beam = float(beam), float(lattice_beam)
        cfg.max_active, cfg.min_active = int(max_active), min(int(min_active), int(max_active))
        cfg.determinize_lattice = False
        self._decoder = khg.LatticeFasterDecoderStdVectorFst(fst, cfg)
        self._ptr = _cpp_pointer(self._decoder, "LatticeFasterDecoderStdVectorFst")

    def decode(self, scaled: np.ndarray) -> RawResult:
        """Decode one utterance; ``scaled[t, i]`` is the scaled log-likelihood of transition
        id ``i + 1`` (kaldi-hmm-gmm's ``DecodableCtc`` convention)."""
        mat = np.ascontiguousarray(scaled, dtype=np.float32)
        decodable = khg.DecodableCtc(mat)
        f = self._fns
        if not f["decode"](self._ptr, _cpp_pointer(decodable, "DecodableCtc")):
            raise RuntimeError("the decoder kept no token (no path within the beam)")
        frames = int(f["num_frames"](self._ptr))
        if frames != mat.shape[0]:
            raise RuntimeError(f"the decoder stopped at frame {frames} of {mat.shape[0]}")
        reached = bool(f["reached_final"](self._ptr))
        lat = kaldifst.Lattice()
        if not f["raw_lattice"](self._ptr, _cpp_pointer(lat, "Lattice"), True):
            raise RuntimeError("the decoder produced no lattice")
        del decodable
        return RawResult(lat, reached, frames)


# ---------------------------------------------------------------- self-test and fallback


def _self_test_graph() -> kaldifst.StdVectorFst:
    """Three 'words' of two HMM states each (transition ids: self-loop, forward), looping back
    to the start, with an epsilon arc into a shared tail: enough for alternatives in the
    lattice and for epsilon handling."""
    fst = kaldifst.StdVectorFst()
    start = fst.add_state()
    fst.start = start
    fst.set_final(start, 0.0)
    tid = 1
    for word in (1, 2, 3):
        a, b = fst.add_state(), fst.add_state()
        fst.add_arc(start, kaldifst.StdArc(tid, word, 0.5 * word, a))
        fst.add_arc(a, kaldifst.StdArc(tid, 0, 0.7, a))
        fst.add_arc(a, kaldifst.StdArc(tid + 1, 0, 0.3, b))
        fst.add_arc(b, kaldifst.StdArc(tid + 1, 0, 0.6, b))
        fst.add_arc(b, kaldifst.StdArc(0, 0, 0.2, start))
        tid += 2
    return fst


def self_test(frames: int = 40, seed: int = 3) -> str:
    """Compare this decoder's word lattice with LatticeSimpleDecoder's on a tiny graph; returns
    '' when equal, else what differs."""
    import kaldi_decoder as kd  # after kaldifst and kaldi_hmm_gmm (the other order deadlocks)

    from steps_py.decode.lattice import RawLattice, determinize, lattices_equal

    fst = _self_test_graph()
    rng = np.random.default_rng(seed)
    scaled = rng.normal(-3.0, 2.0, size=(frames, 6)).astype(np.float32)
    beam, lattice_beam = 12.0, 6.0
    got = LatticeFasterSearch(fst, beam, lattice_beam, max_active=10000).decode(scaled)
    if not got.reached_final:
        return "the lattice-faster decoder did not reach the graph's final state"
    cfg = kd.LatticeSimpleDecoderConfig()
    cfg.beam, cfg.lattice_beam, cfg.determinize_lattice = beam, lattice_beam, False
    simple = kd.LatticeSimpleDecoder(fst, cfg)
    simple.decode(kd.DecodableCtc(scaled))
    ok, ref_raw = simple.get_raw_lattice()
    if not ok:
        return "LatticeSimpleDecoder produced no lattice on the self-test graph"
    want: RawLattice = RawLattice.from_kaldifst(ref_raw)
    mine = determinize(RawLattice.from_kaldifst(got.lattice), lattice_beam, 1.0)
    theirs = determinize(want, lattice_beam, 1.0)
    return lattices_equal(mine, theirs, tol=1e-3)


_RESOLVED: dict[str, str] = {}


def check_binding(timeout: float = 120.0) -> str:
    """Run ``self_test`` in a child process once per process; '' if it passed, else why not."""
    if "why" not in _RESOLVED:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the child imports this same code
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        try:
            p = subprocess.run(
                [sys.executable, "-m", "steps_py.decode.lattice_faster"],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
            )
            out = (p.stdout + p.stderr).strip().splitlines()
            if p.returncode == 0:
                why = ""
            elif p.returncode < 0:
                why = f"the self-test crashed (signal {-p.returncode})"
            else:
                why = out[-1] if out else f"the self-test exited with status {p.returncode}"
        except subprocess.TimeoutExpired:
            why = f"the self-test did not finish within {timeout:g} s"
        _RESOLVED["why"] = why
    return _RESOLVED["why"]


def resolve_decoder(requested: str) -> str:
    """'faster' if asked for and its self-test passes, else 'simple' (with a warning)."""
    if requested != "faster":
        return requested
    why = check_binding()
    if not why:
        return "faster"
    log.warning(
        "Kaldi's LatticeFasterDecoder from kaldi-hmm-gmm failed its self-test (%s; installed "
        "kaldi-hmm-gmm %s, kaldifst %s; pinned %s, %s): decoding with kaldi-decoder's "
        "LatticeSimpleDecoder instead, which has no max-active and is slower",
        why,
        _version("kaldi-hmm-gmm"),
        _version("kaldifst"),
        PINNED["kaldi-hmm-gmm"],
        PINNED["kaldifst"],
    )
    return "simple"


def main() -> int:
    try:
        why = self_test()
    except Exception as e:  # noqa: BLE001 - reported to the parent as the reason
        why = f"{type(e).__name__}: {e}"
    if why:
        print(why, file=sys.stderr)
        return 1
    print("LatticeFasterDecoder self-test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
