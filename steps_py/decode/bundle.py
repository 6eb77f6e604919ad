"""A self-contained model bundle for decoding audio directly (``steps_py.decode.wav``).

    python -m steps_py.decode.bundle --model exp/dnn_ma_n4/final/ema-hl100000.safetensors \\
        --graph exp/mono/graph --dev-decode exp/dnn_ma_n4/decode_ema-hl100000_dev \\
        --feats data/train --out exp/dnn_ma_n4/bundle_ema-hl100000 [--copy-graph]

Written after the dev decode, which chose the LM weight and insertion penalty (`DecodeDir.chosen`).
``<out>/`` holds:

* ``model.safetensors``: the network with its log priors (a copy);
* ``graph/`` (with ``--copy-graph``) or, in ``bundle.json``, the absolute path of the graph
  dir (an HCLG of a large LM can be GBs: a pointer by default);
* ``conf/<kind>.conf`` and ``conf/pitch.conf``: the Kaldi feature configs the training
  features were made with (from ``<feats>/<kind>/conf/``), none for the recipe's defaults;
* ``bundle.json``: the feature kind, sample rate and CMVN mode (from ``<feats>/<kind>/.done``),
  the chosen LM weight and penalty, the search settings of the dev decode, the priors kind,
  and where each came from.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps_py.cli import add_output_options, step_main
from steps_py.decode.artifact import DecodeDir
from steps_py.decode.inputs import DecodeError, check_graph
from steps_py.fileio import atomic_path, atomic_write_json, mark_done

FORMAT = "ema-asr-bundle-1"
KIND = "fbank"  # the networks' features (steps_py.decode.scorers.NnetScorer)


class BundleError(DecodeError):
    """A bundle cannot be written or read; the message names the file and the fix."""


@dataclass(frozen=True)
class Bundle:
    """A bundle as `steps_py.decode.wav` uses it (paths resolved)."""

    dir: Path
    model: Path
    graph: Path
    kind: str
    conf: Path | None
    pitch_conf: Path | None
    cmvn: str
    sample_rate: int
    lm_weight: float
    penalty: float
    search: dict[str, Any]
    priors: str


def feature_info(feats: Path) -> dict[str, Any]:
    """Kind, rate, CMVN mode and config files of the training features (`<feats>/fbank/.done`)."""
    done = Path(feats) / KIND / ".done"
    if not done.is_file():
        raise BundleError(
            f"{done} not found: --feats must be the data dir the model's features were made "
            "in (e.g. data/train, after steps_py.features.compute --kind fbank)"
        )
    info = json.loads(done.read_text(encoding="utf-8"))
    return {k: info.get(k) for k in ("sample_rate", "cmvn", "pitch", "engine", "dim")}


def write_bundle(
    model: Path, graph: Path, dev_decode: Path, feats: Path, out: Path, copy_graph: bool
) -> dict:
    """Write the bundle dir `out` (see the module docstring); returns bundle.json's content."""
    if not Path(model).is_file() or Path(model).suffix != ".safetensors":
        raise BundleError(
            f"--model {model}: give a network .safetensors file (the training's final/)"
        )
    ginfo = check_graph(graph)
    chosen = DecodeDir(Path(dev_decode)).chosen()
    summary = DecodeDir(Path(dev_decode)).summary(missing_ok=True)
    feat = feature_info(feats)
    conf_dir = Path(feats) / KIND / "conf"
    meta: dict[str, Any] = {
        "format": FORMAT,
        "model": "model.safetensors",
        "graph": "graph" if copy_graph else str(ginfo.dir.resolve()),
        "kind": KIND,
        "conf": f"conf/{KIND}.conf" if (conf_dir / f"{KIND}.conf").is_file() else None,
        "pitch_conf": "conf/pitch.conf" if (conf_dir / "pitch.conf").is_file() else None,
        "cmvn": feat["cmvn"] or "speaker",
        "sample_rate": int(feat["sample_rate"] or 16000),
        "lm_weight": chosen.lm_weight,
        "penalty": chosen.penalty,
        "search": {
            k: summary[k]
            for k in ("beam", "lattice_beam", "acoustic_scale", "lattices", "max_active")
            if summary.get(k) is not None
        },
        "priors": summary.get("priors") or "model",
        "source": {
            "model": str(model),
            "dev_decode": str(dev_decode),
            "dev_cer": summary.get("cer"),
            "feats": str(feats),
        },
    }
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        shutil.copyfile(model, tmp / "model.safetensors")
        if meta["conf"] or meta["pitch_conf"]:
            (tmp / "conf").mkdir()
            for name in (f"{KIND}.conf", "pitch.conf"):
                if (conf_dir / name).is_file():
                    shutil.copyfile(conf_dir / name, tmp / "conf" / name)
        if copy_graph:
            shutil.copytree(ginfo.dir, tmp / "graph", ignore=shutil.ignore_patterns(".done", "log"))
        atomic_write_json(tmp / "bundle.json", meta)
        mark_done(tmp, {"model": str(model), "lm_weight": chosen.lm_weight})
    return meta


def read_bundle(path: Path) -> Bundle:
    """The bundle in dir `path` (bundle.json), its paths resolved and checked."""
    d = Path(path)
    meta_path = d / "bundle.json"
    if not meta_path.is_file():
        raise BundleError(
            f"{meta_path} not found: --model must be a bundle dir written by "
            "python -m steps_py.decode.bundle (run.sh writes exp/<run>/bundle_<model> after decoding)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise BundleError(
            f"{meta_path} is damaged ({e}); write the bundle again (python -m steps_py.decode.bundle)"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise BundleError(f"{meta_path}: format {fmt!r}, expected {FORMAT!r}")
    graph = d / meta["graph"]  # an absolute pointer stays as it is
    check_graph(graph)

    def opt(key: str) -> Path | None:
        return d / meta[key] if meta.get(key) else None

    return Bundle(
        dir=d,
        model=d / meta["model"],
        graph=graph,
        kind=meta["kind"],
        conf=opt("conf"),
        pitch_conf=opt("pitch_conf"),
        cmvn=meta["cmvn"],
        sample_rate=int(meta["sample_rate"]),
        lm_weight=float(meta["lm_weight"]),
        penalty=float(meta["penalty"]),
        search=dict(meta.get("search") or {}),
        priors=meta.get("priors", "model"),
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.decode.bundle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--model", type=Path, required=True, help="network .safetensors (final/)")
    ap.add_argument("--graph", type=Path, required=True, help="graph dir it was decoded with")
    ap.add_argument(
        "--dev-decode", type=Path, required=True, help="its dev decode dir (chose the LM weight)"
    )
    ap.add_argument(
        "--feats",
        type=Path,
        default=Path("data/train"),
        help="data dir whose fbank/ the model was trained on (default: %(default)s)",
    )
    add_output_options(ap, "bundle dir to write", force_help="rewrite a finished bundle")
    ap.add_argument(
        "--copy-graph",
        action="store_true",
        help="copy the graph into the bundle (default: a pointer)",
    )
    return ap


def run(args: argparse.Namespace) -> int:
    meta = write_bundle(
        args.model, args.graph, args.dev_decode, args.feats, args.out, args.copy_graph
    )
    print(
        f"wrote {args.out} (LM weight {meta['lm_weight']:g}, penalty {meta['penalty']:g}, {meta['sample_rate']} Hz)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "decode.bundle",
        build_parser(),
        run,
        argv,
        done_dir=lambda a: a.out,
        done_state="already written",
        inputs=lambda a: [a.model, a.dev_decode],
    )


if __name__ == "__main__":
    raise SystemExit(main())
