"""Tables and lines on stdout, the way the reader takes them: on a terminal drawn by rich,
wrapped to its width; piped, plain aligned columns with one line per row and nothing else,
without loading rich's console (a page of `history` into `cut`, `grep` or `less` costs its
text, not a layout engine's start)."""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from typing import Protocol

from imagelingo_cli.cli.common import silence_stdout, stdout_console

GAP = "  "


class TextOutput(Protocol):
    def line(self, text: str, *, style: str = "", lead: str = "") -> None:
        """`text` on a line of its own (never wrapped when piped); on a terminal in `style`,
        after `lead` in bold (a field's name)."""

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], *, no_wrap: Collection[str]
    ) -> None:
        """`no_wrap`: the headers of columns a terminal never wraps (ids, times, codes)."""


def text_output() -> TextOutput:
    return TerminalText() if sys.stdout.isatty() else PipedText()


class TerminalText:
    def __init__(self) -> None:
        self.console = stdout_console()

    def line(self, text: str, *, style: str = "", lead: str = "") -> None:
        from rich.text import Text

        self.console.print(Text(lead, style="bold") + Text(text, style=style))

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], *, no_wrap: Collection[str]
    ) -> None:
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for name in headers:
            table.add_column(name, no_wrap=name in no_wrap, overflow="fold")
        for row in rows:
            table.add_row(*row)
        self.console.print(table)


class PipedText:
    def line(self, text: str, *, style: str = "", lead: str = "") -> None:
        self._write(lead + text + "\n")

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[str]], *, no_wrap: Collection[str]
    ) -> None:
        from rich.cells import cell_len  # a character's width on screen; no console needed

        widths = [cell_len(name) for name in headers]
        for row in rows:
            widths = [max(width, cell_len(cell)) for width, cell in zip(widths, row, strict=True)]
        lines = []
        for cells in (headers, *rows):
            padded = (
                cell + " " * (width - cell_len(cell))
                for cell, width in zip(cells, widths, strict=True)
            )
            lines.append(GAP.join(padded).rstrip() + "\n")
        self._write("".join(lines))

    @staticmethod
    def _write(text: str) -> None:
        """Write and flush; when the reader has gone (`| head`), stop quietly with exit 1, as
        rich does."""
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
            raise SystemExit(1) from None
