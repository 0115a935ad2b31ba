"""Output: rich tables on a terminal, plain aligned text when piped, JSON on request."""
from __future__ import annotations

import json
import sys
from typing import Any, Sequence


def is_terminal() -> bool:
    return sys.stdout.isatty()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                footer: Sequence[str] = ()) -> None:
    cells = [[_fmt(v) for v in row] for row in rows]
    if is_terminal():
        from rich.console import Console
        from rich.table import Table
        table = Table(title=title, show_footer=False)
        for i, col in enumerate(columns):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in cells:
            table.add_row(*row)
        console = Console()
        console.print(table)
        for line in footer:
            console.print(line)
        return
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    out = [title, "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(columns, widths)))]
    for row in cells:
        out.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                             for i, (v, w) in enumerate(zip(row, widths))))
    out.extend(footer)
    sys.stdout.write("\n".join(out) + "\n")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return "×".join(str(v) for v in value)
    return str(value)
