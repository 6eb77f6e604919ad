"""Command-line options shared by ``python -m steps_py.decode.gmm`` and ``...decode.nnet``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from steps_py.cli import add_jobs_options
from steps_py.decode.api import DecodeRequest, decode_models
from steps_py.decode.inputs import DecodeError, parse_lm_weights, parse_penalties
from steps_py.decode.search import SearchConfig
from steps_py.runner import is_local


@dataclass(frozen=True)
class DecodeCall:
    """One run of a decode step as its command line, built in one place for the Python
    callers (the study's decodes and its LM-weight calibration; run.sh writes the same flags
    in bash). ``argv()`` parses with the step's own parser (tests/test_study.py checks it),
    so a renamed flag cannot leave a caller behind.

    ``lm_weights`` is the dev grid (``--lm-weights``); ``lm_weight_from`` the dev decode dir
    per model of a test decode (``--lm-weight-from``); ``opts`` the plan's or run.conf's
    decode options, given after the paths and before the LM weights."""

    models: Sequence[Path]
    graph: Path
    data: Path
    outs: Sequence[Path]
    nj: int
    step: str = "steps_py.decode.nnet"
    lm_weights: str | None = None
    lm_weight_from: Sequence[Path] = ()
    log_file: Path | None = None
    opts: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not self.models or len(self.models) != len(self.outs):
            raise DecodeError(
                f"give one out dir per model ({len(self.models)} models, {len(self.outs)} out dirs)"
            )
        if self.lm_weight_from and len(self.lm_weight_from) != len(self.models):
            raise DecodeError(
                f"give one --lm-weight-from dir per model ({len(self.models)} models, "
                f"{len(self.lm_weight_from)} dirs)"
            )
        if self.lm_weights is not None and self.lm_weight_from:
            raise DecodeError("give --lm-weights (dev) or --lm-weight-from (test), not both")

    def argv(self) -> list[str]:
        """The step's flags (without ``python -m <step>``)."""
        argv = ["--model", *map(str, self.models), "--graph", str(self.graph)]
        argv += ["--data", str(self.data), "--out", *map(str, self.outs), "--nj", str(self.nj)]
        if self.log_file is not None:
            argv += ["--log-file", str(self.log_file)]
        argv += list(self.opts)
        if self.lm_weights is not None:
            argv += ["--lm-weights", self.lm_weights]
        if self.lm_weight_from:
            argv += ["--lm-weight-from", *map(str, self.lm_weight_from)]
        return argv

    def command(self, python: str) -> list[str]:
        """The whole command line, run by `python`."""
        return [python, "-m", self.step, *self.argv()]


def build_parser(
    prog: str,
    doc: str,
    *,
    model_help: str,
    model_default: list[Path] | None,
    beam: float,
    lattice_beam: float,
    acoustic_scale: float,
) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model",
        type=Path,
        nargs="+",
        required=model_default is None,
        default=model_default,
        help=model_help,
    )
    p.add_argument(
        "--graph",
        type=Path,
        default=Path("exp/mono/graph"),
        help="graph dir of python -m steps_py.decode.graph (HCLG.fst, words.txt, num_pdfs, topo, "
        "tid2pdf) (default %(default)s)",
    )
    p.add_argument("--data", type=Path, required=True, help="Kaldi data dir with text and features")
    p.add_argument(
        "--out",
        type=Path,
        nargs="+",
        required=True,
        help="decode dir per model, e.g. exp/<run>/decode_<tag>_<set>",
    )
    _add_job_options(p)
    p.add_argument(
        "--lm-weights",
        default="7:17",
        help="LM weights scored from the lattices on dev: START:STOP[:STEP] or a comma "
        "list (default %(default)s, as Kaldi's local/score.sh)",
    )
    p.add_argument(
        "--word-ins-penalties",
        default="0.0,0.5,1.0",
        help="word insertion penalties scored on dev (default %(default)s)",
    )
    p.add_argument(
        "--lm-weight-from",
        type=Path,
        nargs="+",
        default=None,
        help="dev decode dir per model whose chosen LM weight and penalty are used "
        "(required for test sets)",
    )
    _add_search_options(p, beam, lattice_beam, acoustic_scale)
    p.add_argument(
        "--nbest",
        type=int,
        default=0,
        help="also write nbest.txt with this many best word sequences per utterance at "
        "the chosen LM weight and penalty (test sets, i.e. with --lm-weight-from) "
        "(default %(default)s)",
    )
    p.add_argument(
        "--max-utts", type=int, default=0, help="decode only the first N utterances (0 = all)"
    )
    p.add_argument(
        "--log-file",
        type=Path,
        default=None,
        help="log file (default: <first --out>/log/decode.log)",
    )
    p.add_argument("--force", action="store_true", help="decode again even if an out dir is done")
    return p


def _add_job_options(p: argparse.ArgumentParser) -> None:
    add_jobs_options(
        p,
        "decoding processes",
        cmd_help="where the --nj jobs run: local (a pool of worker processes), or Kaldi's --cmd "
        "convention, e.g. 'slurm -p cpu --mem 4G' (steps_py.runner; job j logs to "
        "<first --out>/log/decode.<j>.log)",
    )


def _add_search_options(
    p: argparse.ArgumentParser, beam: float, lattice_beam: float, acoustic_scale: float
) -> None:
    p.add_argument("--beam", type=float, default=beam, help="search beam (default %(default)s)")
    p.add_argument(
        "--lattice-beam",
        type=float,
        default=lattice_beam,
        help="lattice beam (default %(default)s)",
    )
    p.add_argument(
        "--max-active",
        type=int,
        default=7000,
        help="max active tokens per frame (Kaldi's default %(default)s), in the lattice search "
        "and in the best-path search of --no-lattices",
    )
    p.add_argument(
        "--decoder",
        choices=("faster", "simple"),
        default="faster",
        help="lattice search: Kaldi's LatticeFasterDecoder (beam, max-active, lattice beam; "
        "from kaldi-hmm-gmm, self-tested at first use) or kaldi-decoder's LatticeSimpleDecoder "
        "(no max-active; the fallback if the self-test fails) (default %(default)s)",
    )
    p.add_argument(
        "--no-lattices",
        action="store_true",
        help="best path only: Kaldi's FasterDecoder (beam, max-active), one search per "
        "LM weight of --lm-weights, penalty 0; no lattices, no oracle",
    )
    p.add_argument(
        "--pdf-beam",
        type=float,
        default=0.0,
        help="prune, per frame, pdfs more than this many nats (log-likelihood) below the "
        "frame's best (a speed/accuracy trade beside max-active); 0 = off (default %(default)s)",
    )
    p.add_argument(
        "--acoustic-scale",
        type=float,
        default=acoustic_scale,
        help="acoustic scale of the search; lattices are stored unscaled and "
        "rescored at 1/LM weight (default %(default)s)",
    )


def request_from_args(args: argparse.Namespace) -> DecodeRequest:
    is_local(args.cmd)  # a --cmd the runner does not know is an error before any decoding
    if args.max_active < 1:
        raise DecodeError(f"--max-active must be >= 1, not {args.max_active}")
    if args.decoder == "simple" and not args.no_lattices and args.max_active != 7000:
        logging.getLogger("decode").warning(
            "--max-active %d has no effect with --decoder simple (LatticeSimpleDecoder has none)",
            args.max_active,
        )
    penalties = parse_penalties(args.word_ins_penalties)
    if args.no_lattices:
        if args.nbest:
            raise DecodeError("--nbest needs lattices; drop --no-lattices")
        if penalties != [0.0] and args.lm_weight_from is None:
            logging.getLogger("decode").info(
                "--no-lattices: word insertion penalty 0 only (no lattice to rescore), not %s",
                args.word_ins_penalties,
            )
        penalties = [0.0]
    for flag, v in (
        ("--beam", args.beam),
        ("--lattice-beam", args.lattice_beam),
        ("--acoustic-scale", args.acoustic_scale),
    ):
        if not v > 0:
            raise DecodeError(f"{flag} must be positive, not {v}")
    if args.pdf_beam < 0:
        raise DecodeError(f"--pdf-beam must be >= 0, not {args.pdf_beam}")
    if args.nbest < 0 or args.max_utts < 0:
        raise DecodeError("--nbest and --max-utts must be >= 0")
    return DecodeRequest(
        search=SearchConfig(
            beam=args.beam,
            lattice_beam=args.lattice_beam,
            acoustic_scale=args.acoustic_scale,
            pdf_beam=args.pdf_beam,
            lattices=not args.no_lattices,
            max_active=args.max_active,
            decoder=args.decoder,
        ),
        lm_weights=tuple(parse_lm_weights(args.lm_weights)),
        penalties=tuple(penalties),
        priors=getattr(args, "priors", "model"),
        nbest=args.nbest,
        max_utts=args.max_utts,
        force=args.force,
        cmd=args.cmd,
    )


def run(args: argparse.Namespace) -> int:
    results = decode_models(
        args.model,
        args.graph,
        args.data,
        args.out,
        args.nj,
        request_from_args(args),
        args.lm_weight_from,
    )
    for out, s in zip(args.out, results, strict=True):
        if s is not None:
            print(f"{(out / 'cer').read_text(encoding='utf-8').strip()} {out}")
    return 0


def log_file(args: argparse.Namespace) -> Path:
    return args.log_file or args.out[0] / "log" / "decode.log"
