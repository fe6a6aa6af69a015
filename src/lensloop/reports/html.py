"""A self-contained HTML report: headings, text, tables and PNG figures in one file.

Figures are embedded as base64 data URIs, so the report can be mailed or attached to a
lab notebook without its folder. Text is escaped; nothing is fetched from the network.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lensloop import __version__

__all__ = ["Section", "write_html_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; } img { max-width: 100%; border: 1px solid #ddd; margin: 0.5rem 0; }
.meta { color: #666; font-size: 0.85rem; }
"""


@dataclass(frozen=True)
class Section:
    """One part of the report, drawn in this order: text, tables, figures."""

    heading: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[Sequence[Sequence[object]]] = ()  # each: header row, then rows
    figures: Sequence[Path] = field(default_factory=tuple)


def _table(rows: Sequence[Sequence[object]]) -> str:
    if not rows:
        return ""
    head, *body = rows
    cells = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    lines = [f"<tr>{cells}</tr>"]
    for row in body:
        lines.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    return "<table>" + "".join(lines) + "</table>"


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(path.name)
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"></figure>'


def write_html_report(path: Path, title: str, sections: Sequence[Section]) -> Path:
    """Write the report to ``path`` (atomically) and return it.

    Figures that do not exist are listed as missing rather than failing the report.
    """
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">lensloop {__version__}, '
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
        parts += [_table(t) for t in section.tables]
        for figure in section.figures:
            if figure.is_file():
                parts.append(_figure(figure))
            else:
                parts.append(f'<p class="meta">(figure missing: {html.escape(str(figure))})</p>')
    parts.append("</body></html>")
    from lensloop.imaging import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, ("\n".join(parts) + "\n").encode("utf-8"), overwrite=True)
    return path
