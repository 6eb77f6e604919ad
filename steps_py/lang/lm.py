"""The LM: a character n-gram trained here, or your own ARPA; G.fst, dev perplexity.

    python -m steps_py.lang.lm --data data --lang data/lang --out data/lang_test --order 3
    python -m steps_py.lang.lm --lang data/lang --out data/lang_test --arpa my_lm.arpa [--prune 1e-8]

Trains on data/local/lm_text.txt (space-separated characters per line) with the lang
dir's words as vocabulary (so characters of the lexicon that the LM text lacks still get
the unigram's uniform share), writes data/local/lm/lm.arpa, converts it with kaldilm
(``#0`` on backoff arcs, ``<s>``/``</s>`` as epsilons, ilabel-sorted) to <out>/G.fst beside a
copy of the lang files, and writes the perplexity of data/dev/text, computed from the
ARPA file itself, to data/local/lm/perplexity.txt.

With ``--arpa FILE`` (a character or word ARPA LM of your own, e.g. Kaldi AISHELL's word
3-gram with a word lexicon from ``local.mandarin.prepare_dict --words``) nothing is trained:
its words missing from words.txt are listed in <lm-dir>/oovs_lm.txt and logged, and the
n-grams that contain them are removed (Kaldi's find_arpa_oovs.pl + format_lm.sh). With
``--prune T`` the LM (trained or given) is entropy-pruned first (``steps_py.lang.arpa_lm``).
<lm-dir>/lm.arpa is always the LM that G.fst was made of.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import kaldifst

from steps_py.cli import StepError, add_output_options, dataclass_from_args, step_main
from steps_py.data.kaldi_dir import DataDirError, read_kaldi_map
from steps_py.fileio import atomic_path, atomic_write_json, atomic_write_text, is_done, mark_done
from steps_py.lang.arpa_lm import NoLmWordsError, fit_to_lang, prune_entropy
from steps_py.lang.ngram import ArpaError, NgramLM, perplexity, read_arpa, train_mkn
from steps_py.lang.symbols import SymbolTableError, read_symbol_table

log = logging.getLogger("lang.lm")


class LmError(StepError):
    """The LM cannot be built; the message names the file and the fix."""


NOT_LM_WORDS = frozenset({"<eps>", "!SIL", "<SPOKEN_NOISE>", "#0", "<s>", "</s>"})
UNK = "<UNK>"


def same_lang(lang: Path, lang_test: Path) -> bool:
    """True if `lang_test` was built from the current `lang` (same symbol tables and L.fst)."""
    for name in ("words.txt", "phones.txt", "L_disambig.fst"):
        a, b = lang / name, lang_test / name
        if not (a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()):
            return False
    return True


def read_lm_text(path: Path, vocab: set[str]) -> tuple[list[list[str]], int]:
    """Sentences of the LM text; tokens outside `vocab` become <UNK> (returned count)."""
    if not path.is_file():
        raise LmError(
            f"{path} not found: run the data preparation (steps_py.data.prepare) first, or give --arpa FILE"
        )
    sents: list[list[str]] = []
    n_unk = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        toks = line.split()
        if not toks:
            continue
        mapped = [t if t in vocab else UNK for t in toks]
        n_unk += sum(t not in vocab for t in toks)
        sents.append(mapped)
    return sents, n_unk


# kaldilm is run in a child process: its bundled OpenFst clashes with kaldifst's and
# kaldi_hmm_gmm's. Importing kaldilm (or kaldi_decoder) BEFORE kaldifst or kaldi_hmm_gmm in
# one process deadlocks in libkaldifst_fst.so's static initialisation (checked with gdb), so
# this module never imports kaldilm itself and stays importable next to them.
_ARPA2FST = (
    "import sys, kaldilm\n"
    "kaldilm.arpa2fst(input_arpa=sys.argv[1], output_fst=sys.argv[2], disambig_symbol='#0',\n"
    "                 read_symbol_table=sys.argv[3], max_order=int(sys.argv[4]))\n"
)


def build_g_fst(arpa: Path, words_txt: Path, out_fst: Path, order: int) -> kaldifst.StdVectorFst:
    """ARPA -> G.fst with kaldilm (Kaldi's arpa2fst: ``#0`` on backoff arcs, ``<s>``/``</s>``
    as epsilon, ilabel-sorted), written to `out_fst` and read back."""
    cmd = [sys.executable, "-c", _ARPA2FST, str(arpa), str(out_fst), str(words_txt), str(order)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not Path(out_fst).is_file():
        tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"kaldilm.arpa2fst failed on {arpa} (exit {proc.returncode}):\n{tail}")
    g = kaldifst.StdVectorFst.read(str(out_fst))
    if g is None or g.num_states == 0:
        raise RuntimeError(f"kaldilm produced an empty G.fst from {arpa}")
    return g


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.lang.lm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=Path("data"),
        help="data root (local/lm_text.txt, dev/text) (default: %(default)s)",
    )
    ap.add_argument(
        "--lang",
        type=Path,
        default=Path("data/lang"),
        help="lang dir from steps_py.lang.prepare (default: %(default)s)",
    )
    add_output_options(
        ap,
        "output lang dir with G.fst",
        Path("data/lang_test"),
        force_help="redo even if <out>/.done exists",
    )
    ap.add_argument("--order", type=int, default=3, help="n-gram order to train (default: 3)")
    ap.add_argument(
        "--arpa",
        type=Path,
        default=None,
        help="use this ARPA LM (word or character) instead of training one (default: train)",
    )
    ap.add_argument(
        "--prune",
        type=float,
        default=0.0,
        help="entropy-pruning threshold, e.g. 1e-8 (relative perplexity change); 0: none "
        "(default: %(default)s)",
    )
    ap.add_argument(
        "--lm-dir", type=Path, default=None, help="where lm.arpa goes (default <data>/local/lm)"
    )
    ap.add_argument(
        "--dev-text",
        type=Path,
        default=None,
        help="Kaldi text for perplexity (default <data>/dev/text)",
    )
    return ap


@dataclass(frozen=True)
class LmConfig:
    """What an LM step is asked to do; fields are named as the flags (``--lm-dir`` -> `lm_dir`)."""

    data: Path  # data root: local/lm_text.txt, dev/text
    lang: Path
    out: Path  # the lang dir with G.fst
    force: bool  # redo even if <out>/.done exists
    order: int  # n-gram order to train
    arpa: Path | None  # an ARPA LM of one's own (None: train one)
    prune: float  # entropy-pruning threshold (0: none)
    lm_dir: Path | None  # where lm.arpa goes (None: <data>/local/lm)
    dev_text: Path | None  # Kaldi text for perplexity (None: <data>/dev/text)


def lm_source(config: LmConfig) -> dict[str, object]:
    """What the LM is made of, recorded in <out>/.done: a change of it redoes the step."""
    if config.arpa is None:
        return {"source": "trained", "order": config.order, "prune": config.prune}
    if not config.arpa.is_file():
        raise LmError(f"--arpa {config.arpa} not found")
    sha = hashlib.sha1(config.arpa.read_bytes()).hexdigest()
    return {"source": str(config.arpa), "arpa_sha1": sha, "prune": config.prune}


def up_to_date(config: LmConfig, source: dict[str, object]) -> bool:
    """True if --out is done, not --force, from the current lang and the same LM `source`."""
    out, lang = config.out, config.lang
    if not is_done(out) or config.force:
        return False
    done = json.loads((out / ".done").read_text(encoding="utf-8"))
    if not same_lang(lang, out):
        log.info("%s has other words/phones than %s (lang was rebuilt); rebuilding", out, lang)
        return False
    if "source" not in done:  # written before --arpa existed: a trained LM, unpruned
        done = {"source": "trained", "order": done.get("order"), "prune": 0.0}
    if {k: done.get(k) for k in source} != source:
        log.info("%s was made from another LM or pruning; rebuilding", out)
        return False
    return True


def lang_words(lang: Path) -> list[str]:
    words_txt = lang / "words.txt"
    if not words_txt.is_file():
        raise LmError(f"{words_txt} not found: run steps_py.lang.prepare first")
    try:
        return [w for w, _ in read_symbol_table(words_txt)]
    except SymbolTableError as e:
        raise LmError(str(e)) from None


def train_lm(config: LmConfig, vocab: set[str], lm_dir: Path) -> tuple[Path, dict]:
    """Train the MKN LM on <data>/local/lm_text.txt; its ARPA file and what to record."""
    sents, n_unk = read_lm_text(config.data / "local" / "lm_text.txt", vocab)
    if n_unk:
        log.warning(
            "%d LM-text tokens are not in %s/words.txt and were mapped to %s; "
            "re-run steps_py.lang.prepare --force to include them",
            n_unk,
            config.lang,
            UNK,
        )
    if not sents:
        raise LmError(f"{config.data / 'local' / 'lm_text.txt'} has no sentences")
    log.info(
        "training a %d-gram MKN LM on %d sentences, %d tokens, vocabulary %d",
        config.order,
        len(sents),
        sum(map(len, sents)),
        len(vocab),
    )
    lm = train_mkn(sents, order=config.order, vocab=vocab, unk=UNK)
    for n, d in sorted(lm.discounts.items()):
        log.info(
            "order %d: %d n-grams, discounts D1=%.3f D2=%.3f D3+=%.3f",
            n,
            lm.counts_per_order()[n - 1],
            *d,
        )
    arpa = lm_dir / "lm.arpa"
    lm.write_arpa(arpa)
    return arpa, {"lm_sentences": len(sents), "lm_unk_tokens": n_unk}


def dev_perplexity(lm: NgramLM, dev_text: Path, lm_dir: Path) -> dict[str, object]:
    if not dev_text.is_file():
        log.warning("%s not found; no perplexity computed", dev_text)
        return {}
    try:
        dev = [v.split() for v in read_kaldi_map(dev_text, allow_empty_value=True).values()]
    except DataDirError as e:
        raise LmError(str(e)) from None
    res = perplexity(lm, dev)
    line = f"{lm.order}-gram LM perplexity on {dev_text}: {res.summary()}"
    atomic_write_text(lm_dir / "perplexity.txt", line + "\n")
    print(line)
    return {"dev_perplexity": res.perplexity, "dev_oovs": res.oovs, "dev_words": res.words}


def run(args: argparse.Namespace) -> int:
    return make_lm(dataclass_from_args(LmConfig, args))


def make_lm(config: LmConfig) -> int:
    """Build the LM of `config` (trained or given, pruned, fitted to the lang's words) into
    --lm-dir and its G.fst beside a copy of the lang files into --out, with the dev
    perplexity; 0, also when --out is up to date."""
    if config.order < 1:
        raise LmError(f"--order must be >= 1, got {config.order}")
    if config.prune < 0:
        raise LmError(f"--prune must be >= 0 (a relative perplexity change), got {config.prune}")
    source = lm_source(config)
    if up_to_date(config, source):
        log.info("%s is already done (.done marker); skipping. Use --force to redo.", config.out)
        return 0
    lm_dir = config.lm_dir or config.data / "local" / "lm"
    lm_dir.mkdir(parents=True, exist_ok=True)
    words = lang_words(config.lang)
    info: dict[str, object] = dict(source)
    if config.arpa is None:
        arpa, extra = train_lm(config, {w for w in words if w not in NOT_LM_WORDS}, lm_dir)
        info.update(extra)
    else:
        arpa = config.arpa
    if config.prune > 0:
        pruned = lm_dir / "lm_pruned.arpa.tmp"
        prune_entropy(arpa, pruned, config.prune)
        arpa = pruned
    try:
        lm, extra = fit_to_lang(read_arpa(arpa), words, lm_dir / "oovs_lm.txt")
    except ArpaError as e:
        raise LmError(f"{e}; give a text ARPA file (gunzip a .arpa.gz first)") from None
    except NoLmWordsError as e:
        raise LmError(str(e)) from None
    info.update(extra)
    if extra["removed_ngrams"]:
        lm.write_arpa(lm_dir / "lm.arpa")
    elif arpa != lm_dir / "lm.arpa":
        shutil.copyfile(arpa, lm_dir / "lm.arpa")
    if config.prune > 0:
        (lm_dir / "lm_pruned.arpa.tmp").unlink()
    info.update({"order": lm.order, "ngrams": lm.counts_per_order()})
    info.update(dev_perplexity(lm, config.dev_text or config.data / "dev" / "text", lm_dir))
    with atomic_path(config.out) as tmp:
        shutil.copytree(config.lang, tmp, ignore=shutil.ignore_patterns(".done", ".*.tmp*"))
        g = build_g_fst(lm_dir / "lm.arpa", tmp / "words.txt", tmp / "G.fst", lm.order)
        info.update(
            {"G_states": g.num_states, "G_arcs": sum(g.num_arcs(s) for s in range(g.num_states))}
        )
        mark_done(tmp, info)
    atomic_write_json(lm_dir / "info.json", info)
    log.info("wrote %s (G.fst: %d states, %d arcs)", config.out, info["G_states"], info["G_arcs"])
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main("lang.lm", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
