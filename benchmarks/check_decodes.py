"""Check the decode dirs of a finished run: every test decode has lattices, Kaldi scoring files
and a real-time factor within the target.

    python benchmarks/check_decodes.py --exp exp [--set test] [--max-rtf 0.05]

For each ``exp/**/decode*_<set>`` dir it checks: ``lat.*.gz`` present (one per job of
``num_jobs``), a ``cer_<lmwt>_<wip>`` file holding a ``%WER`` line, and ``summary.json`` with
``timing.rtf_per_core <= --max-rtf``. It prints one row per decode dir (CER, oracle CER,
lattice density, RTF per core and its determinization share) and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from steps_py.decode.artifact import DecodeDir, DecodeDirError


def check_dir(d: Path, max_rtf: float) -> tuple[dict, list[str]]:
    problems = []
    dd = DecodeDir(d)
    try:
        s = dd.summary()
    except DecodeDirError as e:
        return {}, [f"summary.json unreadable ({e})"]
    jobs = int(s.get("num_jobs") or 0)
    lats = dd.lattices()
    if not lats or len(lats) != jobs:
        problems.append(f"{len(lats)} lat.*.gz for {jobs} jobs")
    cers = [f for f in dd.cer_files() if "%WER" in f.read_text(encoding="utf-8")]
    if not cers:
        problems.append("no cer_<lmwt>_<wip> with a %WER line")
    t = s.get("timing") or {}
    rtf = t.get("rtf_per_core")
    if not isinstance(rtf, (int, float)) or rtf > max_rtf:
        problems.append(f"rtf_per_core {rtf} > {max_rtf}")
    cpu = t.get("cpu_s") or 0.0
    row = {
        "dir": str(d),
        "cer": s.get("cer"),
        "oracle_cer": s.get("oracle_cer"),
        "lattice_density": s.get("lattice_density"),
        "rtf_per_core": rtf,
        "determinize_share": round(t.get("determinize_s", 0.0) / cpu, 3) if cpu else None,
        "decoder": s.get("decoder"),
        "partial": len(s.get("partial") or []),
    }
    return row, problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--exp", type=Path, default=Path("exp"), help="default %(default)s")
    p.add_argument("--set", default="test", help="data set suffix (default %(default)s)")
    p.add_argument("--max-rtf", type=float, default=0.05, help="default %(default)s")
    args = p.parse_args(argv)
    dirs = sorted(d for d in args.exp.rglob(f"decode*_{args.set}") if d.is_dir())
    if not dirs:
        print(f"no decode*_{args.set} dirs under {args.exp}", file=sys.stderr)
        return 1
    failed = 0
    print(
        f"{'decode dir':<58} {'CER':>6} {'oracle':>6} {'arcs/f':>6} {'RTF':>7} {'det %':>6}  check"
    )
    for d in dirs:
        row, problems = check_dir(d, args.max_rtf)
        failed += bool(problems)
        share = row.get("determinize_share")
        print(
            f"{str(d.relative_to(args.exp)):<58} {row.get('cer') or 0:>6.2f} "
            f"{row.get('oracle_cer') or 0:>6.2f} {row.get('lattice_density') or 0:>6.2f} "
            f"{row.get('rtf_per_core') or 0:>7.4f} {100 * (share or 0):>6.1f}  "
            + ("ok" if not problems else "; ".join(problems))
        )
    print(f"{len(dirs) - failed} of {len(dirs)} decode dirs pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
