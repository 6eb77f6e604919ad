"""A Kaldi lang dir (+ an ARPA LM) as a lang dir the project's graph builder and aligner use.

    python -m steps_py.kaldi.lang_import --kaldi-lang ../shared/corpora/mandarin_digits/kaldi_lang \\
        --arpa ../shared/corpora/mandarin_digits/lm.arpa --out data/lang_kaldi_test
    python -m steps_py.decode.graph --lang data/lang_kaldi_test --model <kaldi exp dir> --out <exp>/graph

Phone and word ids are kept as Kaldi numbered them (so Kaldi's final.mdl, alignments and
transcripts stay valid). From the Kaldi dir: ``phones.txt words.txt topo L.fst`` (required),
``L_disambig.fst``, ``oov.txt``, ``phones/*.int``, ``phones/align_lexicon.*``, ``G.fst``,
``lexicon.txt`` and the ``silphones.csl``/``nonsilphones.csl`` of older recipes when present.
What a minimal lang dir lacks is added, and each addition is logged and listed in
``<out>/import.json``:

* disambiguation phones: Kaldi's are ``#<digits>`` (``phones/disambig.int`` when given); with
  none, ``#0`` gets the next phone id; ``L_disambig.fst`` is then ``L.fst`` with ``#0:#0``
  self-loops (``fstaddselfloops``), valid only when no pronunciation is shared or a prefix of
  another (checked on ``lexicon.txt``; otherwise build the lang with ``utils/prepare_lang.sh``);
* ``#0``, ``<s>``, ``</s>`` in words.txt (needed by arpa2fst), and an OOV word: ``oov.txt``,
  else ``--oov``, else ``<unk>`` appended without a pronunciation (so it never decodes);
* ``phones/align_lexicon.{txt,int}`` from ``lexicon.txt`` (as prepare_lang.sh makes it);
* ``G.fst`` from ``--arpa`` by kaldilm (Kaldi's arpa2fst), as ``steps_py.lang.lm --arpa``
  makes it: n-grams with words outside words.txt removed, those words in ``oovs_lm.txt``
  (Kaldi's format_lm.sh).
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
from pathlib import Path

from steps_py.cli import StepError, add_output_options, step_main
from steps_py.fileio import atomic_path, atomic_write_json, atomic_write_text, mark_done
from steps_py.lang.symbols import SymbolTableError, read_symbol_table

log = logging.getLogger("kaldi.lang_import")

DISAMBIG_RE = re.compile(r"^#\d+$")


class LangImportError(StepError):
    """A Kaldi lang dir cannot be imported; the message names the file and the fix."""


def read_table(path: Path) -> list[tuple[str, int]]:
    try:
        return read_symbol_table(path)
    except SymbolTableError as e:
        raise LangImportError(str(e)) from None


def table_text(table: list[tuple[str, int]]) -> str:
    return "".join(f"{s} {i}\n" for s, i in table)


def _ints(path: Path) -> list[int] | None:
    if not path.is_file():
        return None
    return [int(x) for x in path.read_text().replace(":", " ").split()]


def phone_class(src: Path, name: str, legacy: str) -> list[int] | None:
    """phones/<name>.int, phones/<name>.csl, or an older recipe's <legacy> colon list."""
    for p in (src / "phones" / f"{name}.int", src / "phones" / f"{name}.csl", src / legacy):
        got = _ints(p)
        if got is not None:
            return got
    return None


def read_lexicon(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) < 2:
            raise LangImportError(f"{path}:{n}: word {f[0]!r} has no pronunciation")
        prons = f[1:]
        if len(prons) > 1 and _is_number(prons[0]):  # lexiconp.txt
            prons = prons[1:]
        entries.append((f[0], tuple(prons)))
    return entries


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def needs_disambig(entries: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """Words whose pronunciation is shared or a proper prefix of another's (add_lex_disambig.pl)."""
    prons: dict[tuple[str, ...], list[str]] = {}
    for w, p in entries:
        prons.setdefault(p, []).append(w)
    bad = [w for p, ws in prons.items() if len(set(ws)) > 1 for w in ws]
    for p, ws in prons.items():
        if any(q[: len(p)] == p and len(q) > len(p) for q in prons):
            bad += ws
    return sorted(set(bad))


def check_topo(
    src: Path, topo_text: str, name_of_phone: dict[int, str], disambig: list[int], used: list[int]
) -> None:
    """The topology covers exactly real phones of phones.txt, and all of `used`."""
    from steps_py.kaldi.topology import HmmTopology

    topo = HmmTopology.from_text(topo_text, name=str(src / "topo"))
    unknown = [p for p in topo.phones if p not in name_of_phone or p in disambig]
    if unknown:
        raise LangImportError(
            f"{src}/topo covers phone ids {unknown[:5]} that are not phones of phones.txt"
        )
    uncovered = [name_of_phone[i] for i in used if i not in topo.phones]
    if uncovered:
        raise LangImportError(f"{src}/topo does not cover phones {uncovered[:5]}")


def complete_words(
    src: Path, words: list[tuple[str, int]], word_id: dict[str, int], oov: str | None, added: dict
) -> str:
    """Add ``#0``, ``<s>``, ``</s>`` and the OOV word to words.txt when missing; the OOV word."""
    for w in ("#0", "<s>", "</s>"):
        if w not in word_id:
            word_id[w] = max(word_id.values()) + 1
            words.append((w, word_id[w]))
            added.setdefault("words", []).append(w)  # type: ignore[union-attr]
    if (src / "oov.txt").is_file():
        oov = (src / "oov.txt").read_text(encoding="utf-8").split()[0]
    oov = oov or next((w for w in ("<UNK>", "<unk>", "<SPOKEN_NOISE>") if w in word_id), "<unk>")
    if oov not in word_id:
        word_id[oov] = max(word_id.values()) + 1
        words.append((oov, word_id[oov]))
        added["oov_word"] = f"{oov} (no pronunciation)"
    return oov


def write_l_disambig(
    src: Path,
    out: Path,
    lexicon: list | None,
    phones: list[tuple[str, int]],
    word0: int,
    added: dict,
) -> None:
    """<out>/L_disambig.fst: Kaldi's, or L.fst with ``#0:#0`` self-loops when it has none."""
    import kaldifst

    if (src / "L_disambig.fst").is_file():
        shutil.copy(src / "L_disambig.fst", out / "L_disambig.fst")
    else:
        if lexicon is not None:
            bad = needs_disambig(lexicon)
            if bad:
                raise LangImportError(
                    f"{src}: words {bad[:5]} share (or prefix) pronunciations and there is no "
                    "L_disambig.fst; build the lang dir with Kaldi's utils/prepare_lang.sh"
                )
        else:
            log.warning("%s has no L_disambig.fst and no lexicon.txt: assuming no homophones", src)
        L = kaldifst.StdVectorFst.read(str(src / "L.fst"))
        d0 = next(i for p, i in phones if p == "#0")
        kaldifst.add_self_loops(L, [d0], [word0])
        kaldifst.arcsort(L, sort_type="olabel")
        L.write(str(out / "L_disambig.fst"))
        added["L_disambig.fst"] = "L.fst + #0:#0 self-loops"


def write_phone_sets(
    out: Path, sets: dict[str, list[int]], name_of_phone: dict[int, str], phone0: int, word0: int
) -> None:
    """phones/<set>.{int,txt,csl} and the wdisambig files."""
    for name, ids in sets.items():
        atomic_write_text(out / "phones" / f"{name}.int", "".join(f"{i}\n" for i in ids))
        atomic_write_text(
            out / "phones" / f"{name}.txt", "".join(f"{name_of_phone.get(i, '#0')}\n" for i in ids)
        )
        atomic_write_text(out / "phones" / f"{name}.csl", ":".join(str(i) for i in ids) + "\n")
    atomic_write_text(out / "phones" / "wdisambig.txt", "#0\n")
    atomic_write_text(
        out / "phones" / "wdisambig_phones.int",
        f"{phone0}\n",
    )
    atomic_write_text(out / "phones" / "wdisambig_words.int", f"{word0}\n")


def phone_classes(
    src: Path, phones: list[tuple[str, int]], phone_id: dict[str, int], added: dict
) -> tuple[list[int], list[int], list[int], list[int]]:
    """(disambig, silence, nonsilence, optional silence) phone ids; ``#0`` added when the
    lang dir has no disambiguation phone."""
    disambig = _ints(src / "phones" / "disambig.int")
    if disambig is None:
        disambig = [i for p, i in phones if DISAMBIG_RE.match(p)]
    if not disambig:
        nid = max(i for _, i in phones) + 1
        phones.append(("#0", nid))
        phone_id["#0"] = nid
        disambig = [nid]
        added["disambig_phone"] = f"#0={nid}"
    silence = phone_class(src, "silence", "silphones.csl")
    if silence is None:
        raise LangImportError(
            f"{src}: no silence phone list (phones/silence.int, or silphones.csl)"
        )
    nonsil = phone_class(src, "nonsilence", "nonsilphones.csl")
    if nonsil is None:
        nonsil = [i for p, i in phones if i != 0 and i not in silence and i not in disambig]
    optional = _ints(src / "phones" / "optional_silence.int") or silence[:1]
    return disambig, silence, nonsil, optional


def import_kaldi_lang(
    src: Path, out: Path, arpa: Path | None = None, oov: str | None = None
) -> dict:
    """Write the project lang dir for Kaldi lang dir `src` into `out` (an empty or scratch dir)."""
    src, out = Path(src), Path(out)
    for name in ("phones.txt", "words.txt", "topo", "L.fst"):
        if not (src / name).is_file():
            raise LangImportError(
                f"{src}/{name} not found: a Kaldi lang dir holds phones.txt, words.txt, topo, L.fst"
            )
    added: dict[str, object] = {}
    phones = read_table(src / "phones.txt")
    words = read_table(src / "words.txt")
    phone_id = dict(phones)
    word_id = dict(words)

    disambig, silence, nonsil, optional = phone_classes(src, phones, phone_id, added)
    name_of_phone = {i: p for p, i in phones}

    topo_text = (src / "topo").read_text(encoding="utf-8")
    check_topo(src, topo_text, name_of_phone, disambig, silence + nonsil)

    oov = complete_words(src, words, word_id, oov, added)

    lexicon = read_lexicon(src / "lexicon.txt") if (src / "lexicon.txt").is_file() else None

    out.mkdir(parents=True, exist_ok=True)
    (out / "phones").mkdir(exist_ok=True)
    atomic_write_text(out / "phones.txt", table_text(phones))
    atomic_write_text(out / "words.txt", table_text(words))
    atomic_write_text(out / "topo", topo_text)
    atomic_write_text(out / "oov.txt", f"{oov}\n")
    atomic_write_text(out / "oov.int", f"{word_id[oov]}\n")
    shutil.copy(src / "L.fst", out / "L.fst")
    write_l_disambig(src, out, lexicon, phones, word_id["#0"], added)
    sets = {
        "silence": silence,
        "nonsilence": nonsil,
        "optional_silence": optional,
        "disambig": disambig,
        "context_indep": silence,
    }
    write_phone_sets(out, sets, name_of_phone, phone_id.get("#0", disambig[0]), word_id["#0"])
    if (src / "phones" / "align_lexicon.int").is_file():
        for ext in ("txt", "int"):
            if (src / "phones" / f"align_lexicon.{ext}").is_file():
                shutil.copy(
                    src / "phones" / f"align_lexicon.{ext}", out / "phones" / f"align_lexicon.{ext}"
                )
    elif lexicon is not None:
        from steps_py.lang.align_lexicon import write_align_lexicon

        write_align_lexicon(out / "phones", lexicon, name_of_phone[optional[0]], phone_id, word_id)
        shutil.copy(src / "lexicon.txt", out / "lexicon.txt")
        added["align_lexicon"] = "from lexicon.txt"
    if arpa is not None:
        added["G.fst"] = g_from_arpa(Path(arpa), out, [w for w, _ in words])
    elif (src / "G.fst").is_file():
        shutil.copy(src / "G.fst", out / "G.fst")
    for k, v in added.items():
        log.info("%s: added %s: %s", out, k, v)
    info = {
        "source": str(src),
        "arpa": str(arpa) if arpa else None,
        "added": added,
        "phones": len(phones),
        "words": len(words),
        "oov": oov,
    }
    atomic_write_json(out / "import.json", info)
    return info


def g_from_arpa(arpa: Path, out: Path, words: list[str]) -> str:
    """<out>/G.fst from `arpa` as ``steps_py.lang.lm --arpa`` makes it: n-grams with words
    outside words.txt removed and those words listed in <out>/oovs_lm.txt (format_lm.sh)."""
    from steps_py.lang.arpa_lm import NoLmWordsError, fit_to_lang
    from steps_py.lang.lm import build_g_fst
    from steps_py.lang.ngram import ArpaError, read_arpa

    try:
        lm, info = fit_to_lang(read_arpa(arpa), words, out / "oovs_lm.txt")
        src = arpa
        if info["removed_ngrams"]:
            src = out / "lm_in_lexicon.arpa"
            lm.write_arpa(src)
        build_g_fst(src, out / "words.txt", out / "G.fst", -1)
    except (ArpaError, NoLmWordsError, RuntimeError) as e:
        raise LangImportError(str(e)) from None
    return f"from {arpa}" + (f" ({info['lm_oovs']} OOV words removed)" if info["lm_oovs"] else "")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m steps_py.kaldi.lang_import",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--kaldi-lang",
        type=Path,
        required=True,
        help="Kaldi lang dir (phones.txt, words.txt, topo, L.fst, ...)",
    )
    ap.add_argument(
        "--arpa",
        type=Path,
        default=None,
        help="ARPA LM for G.fst (default: the lang dir's G.fst, if any)",
    )
    ap.add_argument(
        "--oov",
        default=None,
        help="OOV word when the lang dir has no oov.txt (default: <UNK>/<unk>/<SPOKEN_NOISE>, else <unk> added)",
    )
    add_output_options(ap, "output lang dir", force_help="rewrite even if --out is done")
    return ap


def run(args: argparse.Namespace) -> int:
    if args.arpa is not None and not args.arpa.is_file():
        raise LangImportError(f"--arpa {args.arpa} not found")
    with atomic_path(args.out) as tmp:
        info = import_kaldi_lang(args.kaldi_lang, tmp, args.arpa, args.oov)
        mark_done(tmp, {"phones": info["phones"], "words": info["words"]})
    log.info("imported %s into %s", args.kaldi_lang, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return step_main(
        "kaldi.lang_import",
        build_parser(),
        run,
        argv,
        done_dir=lambda a: a.out,
        done_state="already imported",
    )


if __name__ == "__main__":
    raise SystemExit(main())
