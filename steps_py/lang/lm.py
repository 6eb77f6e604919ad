"""Stage 2b: character n-gram LM (modified Kneser-Ney), ARPA, G.fst and dev perplexity.

    python -m steps_py.lang.lm --data data --lang data/lang --out data/lang_test --order 3

Trains on data/local/lm_text.txt (space-separated characters per line) with the lang
dir's words as vocabulary (so characters of the lexicon that the LM text lacks still get
the unigram's uniform share), writes data/local/lm/lm.arpa, converts it with kaldilm
(``#0`` on backoff arcs, ``<s>``/``</s>`` as epsilons, ilabel-sorted) to <out>/G.fst beside a
copy of the lang files, and writes the perplexity of data/dev/text, computed from the
ARPA file itself, to data/local/lm/perplexity.txt.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import kaldifst

from steps_py.data.kaldi_dir import DataDirError, read_kaldi_map
from steps_py.fileio import atomic_path, atomic_write_json, atomic_write_text, is_done, mark_done
from steps_py.lang.ngram import perplexity, read_arpa, train_mkn
from steps_py.lang.symbols import SymbolTableError, read_symbol_table
from steps_py.log import setup_logging

log = logging.getLogger("lang.lm")

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
        raise FileNotFoundError(f"{path} not found: run stage 1 (steps_py.data.prepare) first")
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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=Path("data"), help="data root (local/lm_text.txt, dev/text)"
    )
    ap.add_argument(
        "--lang", type=Path, default=Path("data/lang"), help="lang dir from steps_py.lang.prepare"
    )
    ap.add_argument(
        "--out", type=Path, default=Path("data/lang_test"), help="output lang dir with G.fst"
    )
    ap.add_argument("--order", type=int, default=3, help="n-gram order")
    ap.add_argument(
        "--lm-dir", type=Path, default=None, help="where lm.arpa goes (default <data>/local/lm)"
    )
    ap.add_argument(
        "--dev-text",
        type=Path,
        default=None,
        help="Kaldi text for perplexity (default <data>/dev/text)",
    )
    ap.add_argument("--force", action="store_true", help="redo even if <out>/.done exists")
    args = ap.parse_args(argv)
    setup_logging("lang.lm")
    if is_done(args.out) and not args.force:
        if same_lang(args.lang, args.out):
            log.info("%s is already done (.done marker); skipping. Use --force to redo.", args.out)
            return 0
        log.info(
            "%s has other words/phones than %s (lang was rebuilt); rebuilding", args.out, args.lang
        )
    if args.order < 1:
        log.error("--order must be >= 1, got %d", args.order)
        return 1
    lm_dir = args.lm_dir or args.data / "local" / "lm"
    dev_text = args.dev_text or args.data / "dev" / "text"
    try:
        words_txt = args.lang / "words.txt"
        if not words_txt.is_file():
            raise FileNotFoundError(f"{words_txt} not found: run steps_py.lang.prepare first")
        vocab = {w for w, _ in read_symbol_table(words_txt) if w not in NOT_LM_WORDS}
        sents, n_unk = read_lm_text(args.data / "local" / "lm_text.txt", vocab)
    except (FileNotFoundError, SymbolTableError) as e:
        log.error("%s", e)
        return 1
    if n_unk:
        log.warning(
            "%d LM-text tokens are not in %s/words.txt and were mapped to %s; "
            "re-run steps_py.lang.prepare --force to include them",
            n_unk,
            args.lang,
            UNK,
        )
    if not sents:
        log.error("%s has no sentences", args.data / "local" / "lm_text.txt")
        return 1
    log.info(
        "training a %d-gram MKN LM on %d sentences, %d tokens, vocabulary %d",
        args.order,
        len(sents),
        sum(map(len, sents)),
        len(vocab),
    )
    lm = train_mkn(sents, order=args.order, vocab=vocab, unk=UNK)
    for n, d in sorted(lm.discounts.items()):
        log.info(
            "order %d: %d n-grams, discounts D1=%.3f D2=%.3f D3+=%.3f",
            n,
            lm.counts_per_order()[n - 1],
            *d,
        )
    arpa = lm_dir / "lm.arpa"
    lm.write_arpa(arpa)
    log.info("wrote %s", arpa)

    info: dict[str, object] = {
        "order": args.order,
        "ngrams": lm.counts_per_order(),
        "lm_sentences": len(sents),
        "lm_unk_tokens": n_unk,
    }
    if dev_text.is_file():
        try:
            dev = [v.split() for v in read_kaldi_map(dev_text, allow_empty_value=True).values()]
        except DataDirError as e:
            log.error("%s", e)
            return 1
        res = perplexity(read_arpa(arpa), dev)
        line = f"{args.order}-gram LM perplexity on {dev_text}: {res.summary()}"
        atomic_write_text(lm_dir / "perplexity.txt", line + "\n")
        print(line)
        info.update(
            {"dev_perplexity": res.perplexity, "dev_oovs": res.oovs, "dev_words": res.words}
        )
    else:
        log.warning("%s not found; no perplexity computed", dev_text)

    with atomic_path(args.out) as tmp:
        shutil.copytree(args.lang, tmp, ignore=shutil.ignore_patterns(".done", ".*.tmp*"))
        g = build_g_fst(arpa, tmp / "words.txt", tmp / "G.fst", args.order)
        info.update(
            {"G_states": g.num_states, "G_arcs": sum(g.num_arcs(s) for s in range(g.num_states))}
        )
        mark_done(tmp, info)
    atomic_write_json(lm_dir / "info.json", info)
    log.info("wrote %s (G.fst: %d states, %d arcs)", args.out, info["G_states"], info["G_arcs"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
