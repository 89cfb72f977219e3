"""HTML building blocks for the report: every piece of text escaped, nothing loaded.

The page is one file: its style sheet inline, its figures inline SVG, no script, no
link to anything outside itself (the navigation links point at its own sections).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0;color:#1f2328;background:#fff;font-size:14px;line-height:1.45}
header{background:#0d1117;color:#f0f6fc;padding:18px 32px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;color:#c9d1d9}
nav{padding:8px 32px;border-bottom:1px solid #d0d7de;background:#f6f8fa;position:sticky;top:0}
nav a{margin-right:16px;color:#0969da;text-decoration:none}
main{padding:8px 32px 32px;max-width:1280px}
section{margin-top:24px}
h2{font-size:18px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin-bottom:6px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37;font-weight:600}
.fail{color:#cf222e;font-weight:600}
.note{color:#59636e}
.figures{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:8px 0}
figure svg{max-width:100%;height:auto}
figcaption{color:#59636e;font-size:12px}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """Numbers compact and readable; anything else as text."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.4e}"
    return str(value)


def cell(value: Any, *, cls: str = "") -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    classes = " ".join(c for c in (cls, "num" if numeric else "") if c)
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{esc(fmt(value))}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, raw: bool = False) -> str:
    """A table; ``raw`` rows hold already-rendered <td> cells."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + ("".join(row) if raw else "".join(cell(v) for v in row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(svg: str, caption: str, name: str) -> str:
    return (
        f'<figure data-figure="{esc(name)}">{svg}<figcaption>{esc(caption)}</figcaption></figure>'
    )


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def section(id_: str, title: str, body: str) -> str:
    return f'<section id="{esc(id_)}"><h2>{esc(title)}</h2>{body}</section>'


def document(title: str, subtitle: Sequence[str], sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole page: ``sections`` are (id, title, body HTML)."""
    nav = "".join(f'<a href="#{esc(i)}">{esc(t)}</a>' for i, t, _ in sections)
    lines = "".join(f"<p>{esc(s)}</p>" for s in subtitle)
    content = "".join(section(i, t, b) for i, t, b in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # The page needs nothing from anywhere: say so to the browser as well.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><header><h1>{esc(title)}</h1>{lines}</header>"
        f"<nav>{nav}</nav><main>{content}</main></body></html>\n"
    )
