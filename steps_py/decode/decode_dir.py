"""Write decode dirs (GMM and NN alike) and pick the LM weight on dev.

`<exp>/decode_<tag>_<set>/`: ref.txt, hyp_lmwt<W>.txt for every LM weight, cer_lmwt.txt
(one Kaldi CER line per weight), then the chosen weight's hyp.txt, cer (Kaldi line) and
best_lmwt. On dev the weight with the lowest CER wins (ties: the smaller weight); on test
pass `lm_weight_from=<the dev decode dir>` and its best_lmwt is reused, never chosen on test.
"""

from __future__ import annotations

from pathlib import Path

from steps_py.fileio import atomic_write_json, atomic_write_text, mark_done
from steps_py.score.cer import CerResult, score_texts


def format_weight(w: float) -> str:
    return f"{w:g}"


def read_best_lmwt(decode_dir: Path) -> float:
    p = Path(decode_dir) / "best_lmwt"
    if not p.is_file():
        raise SystemExit(f"{p} not found: decode the dev set first and pass its dir to --lm-weight-from")
    return float(p.read_text().split()[0])


def _text(lines: dict[str, str]) -> str:
    return "".join(f"{u} {t}".rstrip() + "\n" for u, t in sorted(lines.items()))


def write_decode_dir(out: Path, ref: dict[str, str], hyps: dict[float, dict[str, str]], lm_weight_from: Path | None = None,
                     extra_info: dict | None = None) -> tuple[float, CerResult]:
    """Write every file of a decode dir; returns (chosen LM weight, its CER)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ref.txt", _text(ref))
    results: dict[float, CerResult] = {}
    for w, hyp in sorted(hyps.items()):
        atomic_write_text(out / f"hyp_lmwt{format_weight(w)}.txt", _text(hyp))
        results[w] = score_texts(ref, hyp, ref_name=str(out / "ref.txt"), hyp_name=f"hyp_lmwt{format_weight(w)}", empty_ref="skip")
    atomic_write_text(out / "cer_lmwt.txt", "".join(f"{format_weight(w)} {r.line()}\n" for w, r in sorted(results.items())))
    if lm_weight_from is not None:
        best = read_best_lmwt(lm_weight_from)
        if best not in results:
            raise SystemExit(f"LM weight {best:g} from {lm_weight_from} was not decoded here; include it in --lm-weights")
    else:
        best = min(results, key=lambda w: (results[w].errors, w))
    atomic_write_text(out / "hyp.txt", _text(hyps[best]))
    atomic_write_text(out / "cer", results[best].line() + "\n")
    atomic_write_text(out / "best_lmwt", f"{format_weight(best)}\n")
    info = {"best_lmwt": best, "chosen_on": str(lm_weight_from) if lm_weight_from else "this set", **results[best].to_dict(), **(extra_info or {})}
    info.pop("missing", None)
    atomic_write_json(out / "summary.json", info)
    mark_done(out, {"best_lmwt": best, "cer": results[best].cer})
    return best, results[best]
