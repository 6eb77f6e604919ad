"""Kaldi/OpenFst symbol tables (``words.txt``, ``phones.txt``): ``<symbol> <id>`` per line.

`read_symbol_table` is the one reader of them; each stage wraps its `SymbolTableError` in
its own error type (``LangError``, ``GraphError``, ...) so the message keeps naming the
file, the line and, where the stage knows it, the command that rewrites the file.
"""

from __future__ import annotations

from pathlib import Path


class SymbolTableError(ValueError):
    """A symbol table that cannot be read; the message names the file and line."""


def read_symbol_table(path: Path) -> list[tuple[str, int]]:
    """``(symbol, id)`` pairs in file order; blank lines are skipped."""
    path = Path(path)
    out: list[tuple[str, int]] = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or not (parts[1].isascii() and parts[1].isdigit()):
                    raise SymbolTableError(
                        f"{path}:{n}: expected '<symbol> <id>', got {line.strip()!r}"
                    )
                out.append((parts[0], int(parts[1])))
    except UnicodeDecodeError as e:
        raise SymbolTableError(
            f"{path}: not UTF-8 ({e.reason} at byte {e.start}); symbol tables are UTF-8"
        ) from None
    return out
