"""Decode a data dir with hybrid network acoustic models through HCLG, lattices and scoring included.

    python -m steps_py.decode.nnet --model exp/dnn_ma_n4/final/global.safetensors \\
        exp/dnn_ma_n4/final/ema-hl100000.safetensors --graph exp/mono/graph --data data/dev \\
        --out exp/dnn_ma_n4/decode_global_dev exp/dnn_ma_n4/decode_ema-hl100000_dev --nj 2
    python -m steps_py.decode.nnet --model <the same models> --graph exp/mono/graph --data data/test \\
        --out <their test dirs> --lm-weight-from <their dev dirs>

Several models decode in one worker pool (each worker loads the graph once). Acoustic scores
are the network's log posteriors minus the log priors stored with the model ("scaled
likelihoods"; ``--priors counts`` uses the alignment-count priors kept beside them), on
CMVN-normalised fbank. Each model gets its own decode dir (``steps_py.decode.decode_dir``):
word lattices ``lat.<job>.gz``, ``cer_<lmwt>_<wip>`` for LM weights x insertion penalties
scored from the lattices, ``scoring_kaldi/best_cer``, ``hyp.txt``, ``summary.json`` (CER,
oracle CER, lattice density, real-time factor per core under ``timing``). The pair is chosen
on dev; a test set takes it from the dev decode dir (``--lm-weight-from``), never from itself.
"""

from __future__ import annotations

import argparse
import sys

from steps_py.cli import step_main
from steps_py.decode import options


def build_parser() -> argparse.ArgumentParser:
    parser = options.build_parser(
        "python -m steps_py.decode.nnet",
        __doc__,
        model_help="acoustic model(s), .safetensors (global or ema-<decay>)",
        model_default=None,
        beam=8.0,
        lattice_beam=5.0,
        acoustic_scale=0.1,
    )
    parser.add_argument(
        "--priors",
        choices=["model", "counts"],
        default="model",
        help="log priors to divide by: the model file's decoding priors or the "
        "alignment-count priors kept beside them (default %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    return step_main("decode.nnet", build_parser(), options.run, argv, log_file=options.log_file)


if __name__ == "__main__":
    sys.exit(main())
