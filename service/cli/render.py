"""Printing what the server sent, safely and readably: no markup, no terminal escapes, no cut ids.

Everything in a job (its tags, its error, its log) comes from whoever submitted it. Printed raw,
`[/]` in a tag crashes Rich's markup parser and `ESC]8;;...` or `ESC[2J` in a log reaches the
terminal as a hyperlink or a cleared screen. `plain()` removes those; `safe()` also escapes markup.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from rich.markup import escape
from rich.table import Table

# Whole escape sequences first (so no `[2J` is left behind), then any remaining C0/C1 control.
_SEQUENCES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, clears
    r"|\x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC: titles, hyperlinks (OSC 8)
    r"|\x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"  # two-character escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    r"|\x9d[^\x07\x9c]*(?:\x07|\x9c)?"  # 8-bit OSC
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: str) -> str:
    """`text` without terminal control: escapes and C0/C1 characters removed, `\\n` and `\\t` kept."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))


def safe(value: object) -> str:
    """A server string ready for Rich markup: controls removed, `[` escaped."""
    return escape(plain(str(value)))


def table(*columns: str, whole: Collection[str] = (), box: bool = False) -> Table:
    """A table that stays readable at 80 columns: `whole` columns (ids, states) are never cut,
    the others wrap (folding long words) instead of ending in `…`."""
    grid = Table(header_style="bold", box=None, padding=(0, 1, 0, 0), pad_edge=False) if not box \
        else Table(header_style="bold")
    for name in columns:
        grid.add_column(name, no_wrap=name in whole, overflow="fold", min_width=len(name))
    return grid
