"""CLI: python -m local.synth --out-dir corpus/synth --config egs/synth/conf/corpus.json"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from local.synth.config import ConfigError, load_config
from local.synth.espeak import EspeakError
from steps_py.cli import add_jobs_options
from steps_py.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m local.synth",
        description="Generate the synthetic Mandarin voice-search corpus (espeak-ng cmn voice, "
        "noise, reverberation): wavs, lhotse manifests, LM text and a report.",
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        default=Path("corpus/synth"),
        help="output directory (default: %(default)s)",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=Path("egs/synth/conf/corpus.json"),
        help="corpus JSON config; keys override built-in defaults (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    add_jobs_options(p, "parallel processes; output does not depend on it")
    p.add_argument(
        "--force", action="store_true", help="regenerate even if out-dir/.done matches this config"
    )
    args = p.parse_args(argv)
    log = setup_logging("corpus.synth")
    try:
        cfg = load_config(
            args.config if args.config.exists() or args.config != p.get_default("config") else None
        )
    except ConfigError as e:
        log.error("bad config: %s", e)
        return 1
    from local.synth.generate import (
        generate_corpus,  # after arg parsing: --help stays fast
    )

    try:
        generate_corpus(args.out_dir, cfg, seed=args.seed, nj=args.nj, force=args.force)
    except EspeakError as e:
        log.error("espeak-ng: %s", e)
        return 1
    except RuntimeError as e:
        log.error("corpus generation failed: %s", e)
        return 1
    sys.stdout.write((args.out_dir / "report.txt").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
