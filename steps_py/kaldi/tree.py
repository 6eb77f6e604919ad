"""Kaldi's ``ContextDependency`` (``src/tree/context-dep.cc``): the ``tree`` file.

    ContextDependency <N> <P> ToPdf <EventMap> EndContextDependency

N is the context width (1 monophone, 3 triphone), P the central position. ``compute``
maps a phone window and a pdf class to a pdf id (Kaldi's Compute; phone 0 = no context at
an utterance edge), ``pdf_info`` lists for every pdf the (phone, pdf class) pairs that can
use it (GetPdfInfo; it defines a transition model's tuples). ``monophone`` builds the tree
``gmm-init-mono`` builds without ``--shared-phones`` (a table on the phone, then on the pdf
class); for the project's monophone models it is byte for byte what kaldi-hmm-gmm's
``monophone_context_dependency(...).write`` gives. Reading, writing and mapping are done
here because kaldi-hmm-gmm can write a tree but not read one, nor build a context-dependent
(triphone) one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from steps_py.fileio import atomic_path
from steps_py.kaldi.event_map import (
    ConstantEventMap,
    EventMap,
    TableEventMap,
    map_event,
    max_answer,
    multi_map,
    read_event_map,
    write_event_map,
)
from steps_py.kaldi.stream import KaldiFormatError, KaldiInput, KaldiOutput, read_bytes
from steps_py.kaldi.topology import HmmTopology

PDF_CLASS_KEY = -1  # kPdfClass


@dataclass
class ContextDependency:
    context_width: int  # N
    central_position: int  # P
    to_pdf: EventMap | None

    @property
    def num_pdfs(self) -> int:
        return max_answer(self.to_pdf) + 1

    def is_monophone(self) -> bool:
        return self.context_width == 1 and self.central_position == 0

    def compute(self, phone_window: list[int] | tuple[int, ...], pdf_class: int) -> int | None:
        """The pdf of `pdf_class` of the central phone in `phone_window` (len N), None if undefined."""
        if len(phone_window) != self.context_width:
            raise ValueError(
                f"phone window of length {len(phone_window)}, the tree has context width {self.context_width}"
            )
        event = {PDF_CLASS_KEY: int(pdf_class), **{i: int(p) for i, p in enumerate(phone_window)}}
        return map_event(self.to_pdf, event)

    def pdf_info(
        self, phones: list[int], num_pdf_classes: list[int]
    ) -> list[list[tuple[int, int]]]:
        """For every pdf, the sorted (phone, pdf class) pairs that can map to it (Kaldi's GetPdfInfo)."""
        info: list[set[tuple[int, int]]] = [set() for _ in range(self.num_pdfs)]
        for phone in phones:
            for pdf_class in range(num_pdf_classes[phone]):
                pdfs = multi_map(
                    self.to_pdf, {self.central_position: phone, PDF_CLASS_KEY: pdf_class}
                )
                if not pdfs:
                    raise KaldiFormatError(
                        f"tree: no pdf for phone {phone}, pdf class {pdf_class}; "
                        "the tree and the topology do not match"
                    )
                for pdf in pdfs:
                    info[pdf].add((phone, pdf_class))
        return [sorted(s) for s in info]

    def monophone_pdfs(self, topo: HmmTopology) -> dict[tuple[int, int], int]:
        """(phone, pdf class) -> pdf for a context-width-1 tree (the whole tree, for a monophone)."""
        if self.context_width != 1:
            raise KaldiFormatError(f"context width {self.context_width}: not a monophone tree")
        out: dict[tuple[int, int], int] = {}
        for phone in topo.phones:
            for c in range(topo.num_pdf_classes(phone)):
                pdf = self.compute([phone], c)
                if pdf is None:
                    raise KaldiFormatError(f"tree: no pdf for phone {phone}, pdf class {c}")
                out[(phone, c)] = pdf
        return out

    @classmethod
    def monophone(cls, topo: HmmTopology) -> ContextDependency:
        """Kaldi's MonophoneContextDependency: pdfs numbered phone by phone, pdf class by pdf class."""
        table: list[EventMap | None] = [None] * (max(topo.phones) + 1)
        n = 0
        for phone in topo.phones:
            k = topo.num_pdf_classes(phone)
            table[phone] = TableEventMap(PDF_CLASS_KEY, [ConstantEventMap(n + c) for c in range(k)])
            n += k
        return cls(1, 0, TableEventMap(0, table))

    # ---- I/O
    @classmethod
    def read(cls, inp: KaldiInput) -> ContextDependency:
        inp.expect_token("ContextDependency")
        n, p = inp.read_int32(), inp.read_int32()
        tok = inp.read_token()
        if tok == "ToLength":  # back-compatibility, as Kaldi
            read_event_map(inp)
            tok = inp.read_token()
        if tok != "ToPdf":
            raise inp.error(f"expected ToPdf, got {tok!r}")
        to_pdf = read_event_map(inp)
        inp.expect_token("EndContextDependency")
        if not 0 <= p < n:
            raise inp.error(f"central position {p} outside a context of width {n}")
        return cls(n, p, to_pdf)

    def write(self, out: KaldiOutput) -> None:
        out.token("ContextDependency")
        out.int32(self.context_width)
        out.int32(self.central_position)
        out.token("ToPdf")
        write_event_map(out, self.to_pdf)
        out.token("EndContextDependency")

    def to_bytes(self, binary: bool = False) -> bytes:
        out = KaldiOutput(binary)
        self.write(out)
        return out.getvalue()


def read_tree(path: Path) -> ContextDependency:
    """Read a Kaldi ``tree`` file (text or binary)."""
    path = Path(path)
    inp = KaldiInput(read_bytes(path), name=str(path))
    return ContextDependency.read(inp)


def write_tree(path: Path, tree: ContextDependency, binary: bool = False) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(tree.to_bytes(binary))
