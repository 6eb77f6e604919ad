"""Lexicon FSTs (L.fst, L_disambig.fst) and the HMM topology file, built with kaldifst.

`make_lexicon_fst` follows the semantics of Kaldi's ``utils/lang/make_lexicon_fst.py``:

* state 0 is the start, state 1 the loop state (the only final state), state 2 the
  silence state; optional silence is allowed at the start and after every word with
  probability `sil_prob` (cost ``-ln p``; not-silence costs ``-ln(1-p)``);
* a word's first phone arc carries the word as output label and the cost
  ``-ln(pron_prob)``; its last phone arc splits into "to the loop state" (no silence)
  and "to the silence state";
* with `sil_disambig`, the silence arc is followed by that disambiguation symbol (Kaldi
  uses the highest ``#k`` for it in L_disambig).

For L_disambig the ``#0`` self-loop (input phone ``#0`` -> output word ``#0``) is added with
kaldifst's AddSelfLoops, as Kaldi's ``fstaddselfloops`` does, so G's backoff ``#0`` passes.
Costs are natural-log, like all Kaldi FSTs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import kaldifst


def make_lexicon_fst(
    entries: Sequence[tuple[str, Sequence[str], float]],
    phone_ids: dict[str, int],
    word_ids: dict[str, int],
    sil_prob: float = 0.5,
    sil_phone: str = "SIL",
    sil_disambig: str | None = None,
) -> kaldifst.StdVectorFst:
    """Build the lexicon transducer (phones -> words) from ``(word, phones, prob)`` entries.

    Phones may include disambiguation symbols (``#1`` ...) already appended. Raises
    KeyError-free `ValueError` naming the word when a phone or word has no id.
    """
    if not 0.0 <= sil_prob < 1.0:
        raise ValueError(f"sil_prob must be in [0, 1), got {sil_prob}")
    fst = kaldifst.StdVectorFst()
    start = fst.add_state()
    fst.start = start
    if sil_prob == 0.0:
        loop = start
        sil_state = None
        no_sil_cost = sil_cost = 0.0
    else:
        loop = fst.add_state()
        sil_state = fst.add_state()
        sil_cost = -math.log(sil_prob)
        no_sil_cost = -math.log(1.0 - sil_prob)
        fst.add_arc(start, kaldifst.StdArc(0, 0, no_sil_cost, loop))
        fst.add_arc(start, kaldifst.StdArc(0, 0, sil_cost, sil_state))
        sil_id = _lookup(phone_ids, sil_phone, "phone", "the silence phone")
        if sil_disambig is None:
            fst.add_arc(sil_state, kaldifst.StdArc(sil_id, 0, 0.0, loop))
        else:
            mid = fst.add_state()
            fst.add_arc(sil_state, kaldifst.StdArc(sil_id, 0, 0.0, mid))
            dis_id = _lookup(phone_ids, sil_disambig, "phone", "the silence disambiguation symbol")
            fst.add_arc(mid, kaldifst.StdArc(dis_id, 0, 0.0, loop))
    fst.set_final(loop, 0.0)

    for word, phones, prob in entries:
        if not phones:
            raise ValueError(f"word '{word}' has an empty pronunciation; every entry needs phones")
        if prob <= 0.0:
            raise ValueError(f"word '{word}' has pronunciation probability {prob}; it must be > 0")
        wid = _lookup(word_ids, word, "word", "the word")
        pids = [_lookup(phone_ids, p, "phone", f"word '{word}'") for p in phones]
        pron_cost = -math.log(prob)
        src = loop
        olabel = wid
        cost = pron_cost
        for pid in pids[:-1]:
            dst = fst.add_state()
            fst.add_arc(src, kaldifst.StdArc(pid, olabel, cost, dst))
            src, olabel, cost = dst, 0, 0.0
        last = pids[-1]
        if sil_state is None:
            fst.add_arc(src, kaldifst.StdArc(last, olabel, cost, loop))
        else:
            fst.add_arc(src, kaldifst.StdArc(last, olabel, cost + no_sil_cost, loop))
            fst.add_arc(src, kaldifst.StdArc(last, olabel, cost + sil_cost, sil_state))
    return fst


def add_disambig_self_loop(fst: kaldifst.StdVectorFst, phone_id: int, word_id: int) -> None:
    """Add ``phone_id:word_id`` self-loops where G's #0 must pass (in place)."""
    kaldifst.add_self_loops(fst, [phone_id], [word_id])


def _lookup(table: dict[str, int], key: str, kind: str, owner: str) -> int:
    try:
        return table[key]
    except KeyError:
        raise ValueError(f"{owner}: {kind} '{key}' is not in the {kind} symbol table") from None


def write_fst(fst: kaldifst.StdVectorFst, path: Path) -> None:
    """Write an FST in OpenFst binary format atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if not fst.write(str(tmp)):
        raise OSError(f"kaldifst could not write {tmp}")
    os.replace(tmp, path)


def transduce(fst: kaldifst.StdFst, ilabels: Sequence[int]) -> tuple[list[int], float] | None:
    """Best output label sequence (and its cost) for an input label sequence, or None.

    Composes a linear acceptor of `ilabels` with `fst` (whose input side must be
    ilabel-sorted or the acceptor side sorted; the acceptor is olabel-sorted by
    construction) and takes the shortest path.
    """
    acc = kaldifst.make_linear_acceptor(list(ilabels))
    comp = kaldifst.compose(acc, fst)
    if comp.num_states == 0:
        return None
    best = kaldifst.shortest_path(comp, n=1)
    ok, _, olabels, weight = kaldifst.get_linear_symbol_sequence(best)
    if not ok:
        return None
    return list(olabels), float(weight.value)


def make_topo(
    nonsil_phone_ids: Sequence[int],
    sil_phone_ids: Sequence[int],
    num_nonsil_states: int = 3,
    num_sil_states: int = 5,
) -> str:
    """Kaldi text topology, as ``utils/gen_topo.pl <nonsil> <sil>``: left-to-right HMMs for
    non-silence phones; for silence, the first state reaches every state but the last, the
    middle ones reach every state from 1 on, and the last is left-to-right."""
    if num_nonsil_states < 1 or num_sil_states < 3:
        raise ValueError(
            f"need >= 1 non-silence and >= 3 silence states (gen_topo.pl), got "
            f"{num_nonsil_states} and {num_sil_states}"
        )
    lines = ["<Topology>"]
    lines += [
        "<TopologyEntry>",
        "<ForPhones>",
        " ".join(map(str, nonsil_phone_ids)),
        "</ForPhones>",
    ]
    for s in range(num_nonsil_states):
        lines.append(
            f"<State> {s} <PdfClass> {s} <Transition> {s} 0.75 <Transition> {s + 1} 0.25 </State>"
        )
    lines += [f"<State> {num_nonsil_states} </State>", "</TopologyEntry>"]
    lines += ["<TopologyEntry>", "<ForPhones>", " ".join(map(str, sil_phone_ids)), "</ForPhones>"]
    last = num_sil_states - 1
    p = f"{1.0 / last:g}"
    trans0 = " ".join(f"<Transition> {t} {p}" for t in range(last))
    lines.append(f"<State> 0 <PdfClass> 0 {trans0} </State>")
    trans_mid = " ".join(f"<Transition> {t} {p}" for t in range(1, num_sil_states))
    for s in range(1, last):
        lines.append(f"<State> {s} <PdfClass> {s} {trans_mid} </State>")
    lines.append(
        f"<State> {last} <PdfClass> {last} <Transition> {last} 0.75 "
        f"<Transition> {num_sil_states} 0.25 </State>"
    )
    lines += [f"<State> {num_sil_states} </State>", "</TopologyEntry>", "</Topology>"]
    return "\n".join(lines) + "\n"
