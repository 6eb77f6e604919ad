"""Kaldi's ``HmmTopology`` (``src/hmm/hmm-topology.cc``), text and binary, read and write.

Text form (the ``topo`` file of a lang dir and the head of every ``final.mdl``)::

    <Topology>
    <TopologyEntry>
    <ForPhones>
    2 3 4
    </ForPhones>
    <State> 0 <PdfClass> 0 <Transition> 0 0.75 <Transition> 1 0.25 </State>
    ...
    <State> 3 </State>
    </TopologyEntry>
    </Topology>

A state has a forward pdf class and a self-loop pdf class (equal in ordinary HMMs, written
as ``<PdfClass>``; ``<ForwardPdfClass> a <SelfLoopPdfClass> b`` otherwise). Binary form:
phones (integer vector), phone2idx (integer vector), then ``-1`` if any state has distinct
pdf classes, the number of entries, and per entry its states (pdf class(es), transitions).
Written by hand: kaldi-hmm-gmm reads topology text but cannot write it or read binary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from steps_py.kaldi.stream import KaldiFormatError, KaldiInput, KaldiOutput

NO_PDF = -1  # kNoPdf


@dataclass
class HmmState:
    forward_pdf_class: int = NO_PDF
    self_loop_pdf_class: int = NO_PDF
    transitions: list[tuple[int, float]] = field(
        default_factory=list
    )  # (destination state, probability)


@dataclass
class HmmTopology:
    """Phones (sorted), phone -> entry index (-1 = not covered) and the entries."""

    phones: list[int]
    phone2idx: list[int]
    entries: list[list[HmmState]]

    # ---- queries
    def entry_for_phone(self, phone: int) -> list[HmmState]:
        if not 0 <= phone < len(self.phone2idx) or self.phone2idx[phone] < 0:
            raise KaldiFormatError(f"phone {phone} is not covered by the HMM topology")
        return self.entries[self.phone2idx[phone]]

    def num_pdf_classes(self, phone: int) -> int:
        states = self.entry_for_phone(phone)
        return 1 + max(max(s.forward_pdf_class, s.self_loop_pdf_class) for s in states)

    def phone2num_pdf_classes(self) -> list[int]:
        """Indexed by phone, -1 for phones not covered (Kaldi's GetPhoneToNumPdfClasses)."""
        out = [-1] * (max(self.phones) + 1)
        for p in self.phones:
            out[p] = self.num_pdf_classes(p)
        return out

    def is_hmm(self) -> bool:
        return all(s.forward_pdf_class == s.self_loop_pdf_class for e in self.entries for s in e)

    def check(self) -> None:
        """The checks of Kaldi's HmmTopology::Check that a reader relies on."""
        if not self.entries or not self.phones:
            raise KaldiFormatError("empty HMM topology")
        for i, e in enumerate(self.entries):
            if not any(self.phone2idx[p] == i for p in self.phones):
                raise KaldiFormatError(f"topology entry {i} has no phones")
            if len(e) < 2 or e[-1].transitions or e[-1].forward_pdf_class != NO_PDF:
                raise KaldiFormatError(
                    f"topology entry {i}: the last state must be non-emitting with no transitions"
                )
            for j, s in enumerate(e[:-1]):
                if not s.transitions:
                    raise KaldiFormatError(
                        f"topology entry {i}, state {j}: a non-final state needs transitions"
                    )
                for dst, prob in s.transitions:
                    if not 0 <= dst < len(e) or prob <= 0:
                        raise KaldiFormatError(
                            f"topology entry {i}, state {j}: bad transition to {dst} ({prob})"
                        )

    # ---- I/O
    @classmethod
    def read(cls, inp: KaldiInput) -> HmmTopology:
        inp.expect_token("<Topology>")
        if inp.binary:
            phones = [int(x) for x in inp.read_int_vector()]
            phone2idx = [int(x) for x in inp.read_int_vector()]
            n = inp.read_int32()
            is_hmm = True
            if n == -1:
                is_hmm = False
                n = inp.read_int32()
            entries: list[list[HmmState]] = []
            for _ in range(n):
                states = []
                for _ in range(inp.read_int32()):
                    fwd = inp.read_int32()
                    slp = fwd if is_hmm else inp.read_int32()
                    trans = [(inp.read_int32(), inp.read_float()) for _ in range(inp.read_int32())]
                    states.append(HmmState(fwd, slp, trans))
                entries.append(states)
            inp.expect_token("</Topology>")
            topo = cls(phones, phone2idx, entries)
        else:
            topo = cls._read_text(inp)
        topo.check()
        return topo

    @classmethod
    def _read_text(cls, inp: KaldiInput) -> HmmTopology:
        entries: list[list[HmmState]] = []
        phone2idx: list[int] = []
        phones: list[int] = []
        while True:
            tok = inp.read_token()
            if tok == "</Topology>":
                break
            if tok != "<TopologyEntry>":
                raise inp.error(f"expected <TopologyEntry> or </Topology>, got {tok!r}")
            inp.expect_token("<ForPhones>")
            these: list[int] = []
            while (tok := inp.read_token()) != "</ForPhones>":
                try:
                    these.append(int(tok))
                except ValueError:
                    raise inp.error(f"expected a phone id in <ForPhones>, got {tok!r}") from None
            states: list[HmmState] = []
            tok = inp.read_token()
            while tok != "</TopologyEntry>":
                if tok != "<State>":
                    raise inp.error(f"expected <State> or </TopologyEntry>, got {tok!r}")
                if inp.read_int32() != len(states):
                    raise inp.error("topology states must be numbered in order from 0")
                tok = inp.read_token()
                s = HmmState()
                if tok == "<PdfClass>":
                    s.forward_pdf_class = s.self_loop_pdf_class = inp.read_int32()
                    tok = inp.read_token()
                elif tok == "<ForwardPdfClass>":
                    s.forward_pdf_class = inp.read_int32()
                    inp.expect_token("<SelfLoopPdfClass>")
                    s.self_loop_pdf_class = inp.read_int32()
                    tok = inp.read_token()
                while tok == "<Transition>":
                    s.transitions.append((inp.read_int32(), float(np.float32(inp.read_float()))))
                    tok = inp.read_token()
                if tok != "</State>":
                    raise inp.error(f"expected </State>, got {tok!r}")
                states.append(s)
                tok = inp.read_token()
            idx = len(entries)
            entries.append(states)
            for p in these:
                if p <= 0:
                    raise inp.error(f"phone id {p} in <ForPhones> must be > 0")
                if p >= len(phone2idx):
                    phone2idx.extend([-1] * (p + 1 - len(phone2idx)))
                if phone2idx[p] != -1:
                    raise inp.error(f"phone {p} appears in two topology entries")
                phone2idx[p] = idx
                phones.append(p)
        return cls(sorted(phones), phone2idx, entries)

    def write(self, out: KaldiOutput) -> None:
        is_hmm = self.is_hmm()
        out.token("<Topology>")
        if not out.binary:
            out.text("\n")
            for i, e in enumerate(self.entries):
                out.token("<TopologyEntry>")
                out.text("\n")
                out.token("<ForPhones>")
                out.text(
                    "\n"
                    + "".join(f"{p} " for p, idx in enumerate(self.phone2idx) if idx == i)
                    + "\n"
                )
                out.token("</ForPhones>")
                out.text("\n")
                for j, s in enumerate(e):
                    out.token("<State>")
                    out.int32(j)
                    if s.forward_pdf_class != NO_PDF:
                        if is_hmm:
                            out.token("<PdfClass>")
                            out.int32(s.forward_pdf_class)
                        else:
                            out.token("<ForwardPdfClass>")
                            out.int32(s.forward_pdf_class)
                            out.token("<SelfLoopPdfClass>")
                            out.int32(s.self_loop_pdf_class)
                    for dst, prob in s.transitions:
                        out.token("<Transition>")
                        out.int32(dst)
                        out.float32(prob)
                    out.token("</State>")
                    out.text("\n")
                out.token("</TopologyEntry>")
                out.text("\n")
        else:
            out.int_vector(self.phones)
            out.int_vector(self.phone2idx)
            if not is_hmm:
                out.int32(-1)
            out.int32(len(self.entries))
            for e in self.entries:
                out.int32(len(e))
                for s in e:
                    out.int32(s.forward_pdf_class)
                    if not is_hmm:
                        out.int32(s.self_loop_pdf_class)
                    out.int32(len(s.transitions))
                    for dst, prob in s.transitions:
                        out.int32(dst)
                        out.float32(prob)
        out.token("</Topology>")
        out.newline()

    def to_text(self) -> str:
        """Kaldi's text form (what ``lang/topo`` holds and kaldi-hmm-gmm's HmmTopology.read takes)."""
        out = KaldiOutput(binary=False)
        self.write(out)
        return out.getvalue().decode("utf-8")

    @classmethod
    def from_text(cls, text: str, name: str = "<topo>") -> HmmTopology:
        return cls.read(KaldiInput(text.encode("utf-8"), name=name, binary=False))
