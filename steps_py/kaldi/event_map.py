"""Kaldi's ``EventMap`` (``src/tree/event-map.cc``): the decision tree inside a ``tree`` file.

An event is a set of (key, value) pairs: key ``-1`` is the pdf class, keys ``0..N-1`` the
phones of the context window. Node types and their serialisation (text and binary share it;
only the integers differ):

* ``CE <answer>``: constant, a leaf (the pdf id);
* ``TE <key> <size:uint32> ( <child> ... )``: table indexed by the key's value, children may
  be ``NULL``;
* ``SE <key> [ <yes values> ] { <yes child> <no child> }``: split on set membership;
* ``NULL``: no map (an undefined table entry).

``map_event`` is Kaldi's Map (None where Kaldi returns false) and ``multi_map`` its
MultiMap (every answer reachable when keys are missing), which ContextDependency's
GetPdfInfo uses. kaldi-hmm-gmm binds EventMap but cannot read or write one, hence this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from steps_py.kaldi.stream import KaldiInput, KaldiOutput


@dataclass
class ConstantEventMap:
    answer: int


@dataclass
class TableEventMap:
    key: int
    table: list[EventMap | None]


@dataclass
class SplitEventMap:
    key: int
    yes_set: list[int]  # sorted, unique
    yes: EventMap
    no: EventMap


EventMap = ConstantEventMap | TableEventMap | SplitEventMap


def read_event_map(inp: KaldiInput) -> EventMap | None:
    c = inp.peek()
    if c == "N":
        inp.expect_token("NULL")
        return None
    if c == "C":
        inp.expect_token("CE")
        return ConstantEventMap(inp.read_int32())
    if c == "T":
        inp.expect_token("TE")
        key = inp.read_int32()
        size = inp.read_uint32()
        inp.expect_token("(")
        table = [read_event_map(inp) for _ in range(size)]
        inp.expect_token(")")
        return TableEventMap(key, table)
    if c == "S":
        inp.expect_token("SE")
        key = inp.read_int32()
        yes_set = sorted({int(x) for x in inp.read_int_vector()})
        inp.expect_token("{")
        yes, no = read_event_map(inp), read_event_map(inp)
        inp.expect_token("}")
        if yes is None or no is None:
            raise inp.error("SplitEventMap with a NULL child")
        return SplitEventMap(key, yes_set, yes, no)
    raise inp.error(f"expected an EventMap (CE, TE, SE or NULL), got character {c!r}")


def write_event_map(out: KaldiOutput, em: EventMap | None) -> None:
    if em is None:
        out.token("NULL")
    elif isinstance(em, ConstantEventMap):
        out.token("CE")
        out.int32(em.answer)
    elif isinstance(em, TableEventMap):
        out.token("TE")
        out.int32(em.key)
        out.uint32(len(em.table))
        out.token("(")
        for child in em.table:
            write_event_map(out, child)
        out.token(")")
        out.newline()
    else:
        out.token("SE")
        out.int32(em.key)
        out.int_vector(em.yes_set)
        out.token("{")
        write_event_map(out, em.yes)
        write_event_map(out, em.no)
        out.token("}")
        out.newline()


def map_event(em: EventMap | None, event: Mapping[int, int]) -> int | None:
    """The answer for a fully specified event, None where Kaldi's Map returns false."""
    while True:
        if em is None:
            return None
        if isinstance(em, ConstantEventMap):
            return em.answer
        if em.key not in event:
            return None
        v = event[em.key]
        if isinstance(em, TableEventMap):
            em = em.table[v] if 0 <= v < len(em.table) else None
        else:
            em = em.yes if v in em.yes_set else em.no


def multi_map(em: EventMap | None, event: Mapping[int, int]) -> set[int]:
    """Every answer reachable from `event` when keys missing from it may take any value."""
    out: set[int] = set()
    stack = [em]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        if isinstance(node, ConstantEventMap):
            out.add(node.answer)
        elif isinstance(node, TableEventMap):
            if node.key in event:
                v = event[node.key]
                if 0 <= v < len(node.table):
                    stack.append(node.table[v])
            else:
                stack.extend(node.table)
        else:
            if node.key in event:
                stack.append(node.yes if event[node.key] in node.yes_set else node.no)
            else:
                stack.extend([node.yes, node.no])
    return out


def max_answer(em: EventMap | None) -> int:
    """Largest leaf value (Kaldi's MaxResult), -1 for an empty map."""
    return max(multi_map(em, {}), default=-1)
