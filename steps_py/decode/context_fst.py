"""Kaldi's context transducer C (``src/fstext/context-fst.cc``), left and right context 1.

``context_fst`` writes out C for a phone inventory as an explicit FST: input labels are
context-dependent phone ids (indices into the returned ``ilabel_info``, Kaldi's
ilabels file), output labels phones, disambiguation symbols and the subsequential symbol
``$`` that ends every sequence. States are the last two phones read (0 before the first);
reading phone c in state (a, b) emits the triphone a-b+c and moves to (b, c); ``$`` emits
a-b+0 (no right context); a state whose second phone is ``$`` is final. Disambiguation
symbols loop on every state with the ilabel ``[-d]``; the first real phone in a state
whose centre is still 0 emits ``#-1`` (ilabel ``[0]``), as Kaldi does when disambiguation
symbols are present. The ilabels are numbered in the order the states are expanded
(breadth first from the start state).

Graph building itself uses Kaldi's ComposeContext, which expands only the states a lexicon
needs, with the same ilabel conventions (kaldifst's ``compose_context``, or for triphones
its numpy form ``steps_py.decode.cd_graph.compose_context``); this explicit form is for
inspection and for the tests that check those conventions.
"""

from __future__ import annotations

from collections import deque

import kaldifst


def context_fst(
    phones: list[int], disambig: list[int], subsequential: int
) -> tuple[kaldifst.StdVectorFst, list[list[int]]]:
    """(C, ilabel_info) for N=3, P=1; `subsequential` must be no phone or disambiguation id."""
    if subsequential in phones or subsequential in disambig or subsequential == 0:
        raise ValueError(f"subsequential symbol {subsequential} clashes with a phone or symbol")
    ilabels: dict[tuple[int, ...], int] = {(): 0}
    if disambig:
        ilabels[(0,)] = 1  # #-1
    states: dict[tuple[int, int], int] = {(0, 0): 0}
    arcs: list[tuple[int, int, int, int]] = []  # src, dst, ilabel, olabel
    queue = deque([(0, 0)])

    def label(seq: tuple[int, ...]) -> int:
        return ilabels.setdefault(seq, len(ilabels))

    def state(seq: tuple[int, int]) -> int:
        if seq not in states:
            states[seq] = len(states)
            queue.append(seq)
        return states[seq]

    while queue:
        a, b = seq = queue.popleft()
        s = states[seq]
        for d in disambig:
            arcs.append((s, s, label((-d,)), d))
        if b == subsequential:
            continue
        eps = 1 if disambig else 0  # no phone in the centre yet: #-1 (or epsilon)
        for c in phones:
            arcs.append((s, state((b, c)), label((a, b, c)) if b != 0 else eps, c))
        out = label((a, b, 0)) if b != 0 else eps
        arcs.append((s, state((b, subsequential)), out, subsequential))
    lines = [f"{src} {dst} {i} {o}" for src, dst, i, o in arcs]
    lines += [str(s) for (a, b), s in states.items() if b == subsequential]
    fst = kaldifst.compile(s="\n".join(lines) + "\n", acceptor=False)
    info = [list(seq) for seq, _ in sorted(ilabels.items(), key=lambda kv: kv[1])]
    return fst, info
