"""Decode a data dir with a GMM on HCLG (Kaldi's steps/decode.sh), lattices and scoring included.

    python -m steps_py.decode.gmm --model exp/mono --graph exp/mono/graph --data data/dev \\
        --out exp/mono/decode_dev --nj 2
    python -m steps_py.decode.gmm --model exp/mono --graph exp/mono/graph --data data/test \\
        --out exp/mono/decode_test --lm-weight-from exp/mono/decode_dev

MFCC + deltas with per-speaker CMVN, the GMM's log-likelihoods of every pdf, the lattice
search of ``steps_py.decode.search`` and the decode dir of ``steps_py.decode.decode_dir``
(lattices ``lat.<job>.gz``, ``cer_<lmwt>_<wip>``, ``scoring_kaldi/best_cer``, ...). The LM
weight and insertion penalty are chosen on dev; test takes dev's (``--lm-weight-from``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from steps_py.cli import step_main
from steps_py.decode import options


def main(argv: list[str] | None = None) -> int:
    parser = options.build_parser(
        "python -m steps_py.decode.gmm",
        __doc__,
        model_help="GMM dir(s) with final.npz, or a Kaldi final.mdl / exp dir holding one (default %(default)s)",
        model_default=[Path("exp/mono")],
        beam=8.0,
        lattice_beam=4.0,
        acoustic_scale=0.083333,
    )
    return step_main("decode.gmm", parser, options.run, argv, log_file=options.log_file)


if __name__ == "__main__":
    sys.exit(main())
