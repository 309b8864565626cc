"""Text for tables: quoted prompts whose characters all take one terminal column, and aligned rows.

An alias is whatever token sequence the search found (emoji, accents, control bytes); printed as is,
a wide or zero-width character shifts its row. ``quote`` escapes every character that is not a
printable one-column character (``\\xNN``, ``\\uNNNN``, ``\\UNNNNNNNN``, as Python writes them), so
``len`` is the printed width and ``align`` lines columns up.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


def _one_column(c: str) -> bool:
    if not c.isprintable() or unicodedata.east_asian_width(c) in ("W", "F"):
        return False
    return unicodedata.category(c) not in ("Mn", "Me", "Cf") and not unicodedata.combining(c)


def _escape(c: str) -> str:
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def quote(text: str | None, width: int | None = None) -> str:
    """``"text"`` with backslashes, quotes and every character that is not a printable one-column
    character escaped; cut to ``width`` characters (``..."`` at the end) when given."""
    if text is None:
        return "-"
    body = "".join("\\\\" if c == "\\" else '\\"' if c == '"' else c if _one_column(c) else _escape(c) for c in text)
    out = f'"{body}"'
    if width is not None and len(out) > width:
        out = out[: max(1, width - 4)] + '..."'
    return out


def align(head: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Header, rule and rows with columns padded to their widest cell: the first ``left`` columns
    left-aligned, the rest right-aligned (cells must be one-column text, e.g. from ``quote``)."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()

    return [line(head), "  ".join("-" * w for w in widths), *map(line, rows)]
