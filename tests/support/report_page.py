"""Reading a model report's HTML: its sections, its figures (and how much each SVG
draws), and anything in it that would load or run something."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from kubeml.runtime.report import SECTIONS

# What a drawn figure is made of in matplotlib's SVG: paths, glyph uses, text, shapes.
DRAWN = frozenset({"path", "use", "text", "rect", "circle", "line", "polyline", "polygon"})


class Page(HTMLParser):
    """Sections, figures (with how much each SVG draws), and anything that would load."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.headings: list[str] = []
        self.figures: dict[str, dict[str, Any]] = {}
        self.loads: list[str] = []  # tags or attributes that fetch or run something
        self._figure: str | None = None
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "iframe", "img", "link", "object", "embed", "base"):
            self.loads.append(tag)
        for name, value in attrs:
            v = (value or "").strip()
            if name in ("src", "href", "xlink:href", "action") and v and not v.startswith("#"):
                self.loads.append(f"{tag} {name}={v}")
            if name.startswith("on"):
                self.loads.append(f"{tag} {name}")
        if tag == "section":
            self.sections.append(str(a.get("id")))
        elif tag == "h2":
            self._in_h2 = True
        elif tag == "figure":
            self._figure = str(a.get("data-figure"))
            self.figures[self._figure] = {"svg": 0, "drawn": 0, "size": None}
        elif self._figure is not None and tag == "svg":
            self.figures[self._figure]["svg"] += 1
            self.figures[self._figure]["size"] = (a.get("width"), a.get("height"))
        elif self._figure is not None and tag in DRAWN:
            self.figures[self._figure]["drawn"] += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._figure = None
        elif tag == "h2":
            self._in_h2 = False

    def handle_data(self, data: str) -> None:
        if self._in_h2 and data.strip():
            self.headings.append(data.strip())


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def check(page: Page, figures: set[str]) -> None:
    assert page.sections == list(SECTIONS)
    assert len(page.headings) == len(SECTIONS)
    assert page.loads == []
    assert set(page.figures) == figures
    for name, fig in page.figures.items():
        assert fig["svg"] == 1, name
        assert fig["drawn"] >= 10, (name, fig)  # axes, ticks, labels and the data itself
        width, height = fig["size"]
        assert (
            float(str(width).removesuffix("pt")) > 0 and float(str(height).removesuffix("pt")) > 0
        )
