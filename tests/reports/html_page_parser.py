"""Reads the results page back with the standard library's ``html.parser``: its tables as text, as a
reader sees them, plus the attributes the page's script and filter use."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class ParsedTable:
    """One ``<table>``: where it sits, its sortable headers, and its body rows as cell texts."""

    section: str
    name: str
    kind: str
    classes: str
    title: str = ""
    headers: list[str] = field(default_factory=list)  # data-header (flat) or the header text
    rows: list[list[str]] = field(default_factory=list)
    row_methods: list[str | None] = field(default_factory=list)
    sort_keys: list[list[str | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class PageParser(HTMLParser):
    """Collects tables, images, links, method check boxes and the figures' ``data-method``."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[ParsedTable] = []
        self.images: list[dict[str, str | None]] = []
        self.hrefs: list[str] = []
        self.scripts_with_src = 0
        self.stylesheets = 0
        self.filter_values: list[str] = []
        self.figure_methods: list[str | None] = []
        self.row_ids: list[str] = []
        self._section = ""
        self._block: dict[str, str] = {}
        self._title: list[str] | None = None
        self._table: ParsedTable | None = None
        self._cell: list[str] | None = None
        self._cell_header: str | None = None
        self._in_head = False
        self._note: list[str] | None = None
        self._in_notes = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id") or a.get("class") or ""
        elif tag == "div" and "data-table" in a:
            self._block = {"name": a["data-table"] or "", "kind": a.get("data-kind") or ""}
        elif tag == "h4" and self._block:
            self._title = []
        elif tag == "table":
            self._table = ParsedTable(self._section, self._block.get("name", ""), self._block.get("kind", ""),
                                      a.get("class") or "", title="".join(self._title or []).strip())
            self._title = None
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and self._table is not None and not self._in_head:
            self._table.rows.append([])
            self._table.sort_keys.append([])
            self._table.row_methods.append(a.get("data-method"))
            if a.get("id"):
                self.row_ids.append(a["id"] or "")
        elif tag == "tr" and self._table is not None:
            self._table.headers = []
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
            if tag == "td":
                self._table.sort_keys[-1].append(a.get("data-sort"))
            elif "data-header" in a:
                self._cell_header = a["data-header"]
            else:
                self._cell_header = None
        elif tag == "img":
            self.images.append(a)
        elif tag == "a" and a.get("href") is not None:
            self.hrefs.append(a["href"] or "")
        elif tag == "script" and a.get("src"):
            self.scripts_with_src += 1
        elif tag == "link":
            self.stylesheets += 1
        elif tag == "input" and a.get("type") == "checkbox":
            self.filter_values.append(a.get("value") or "")
        elif tag == "figure":
            self.figure_methods.append(a.get("data-method"))
        elif tag == "ol" and "notes" in (a.get("class") or ""):
            self._in_notes = True
        elif tag == "li" and self._in_notes:
            self._note = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table is not None and self._cell is not None:
            text = "".join(self._cell).replace("\xa0", " ").strip()  # a no-break space reads as a space
            if tag == "td":
                self._table.rows[-1].append(text)
            else:
                self._table.headers.append(self._cell_header if self._cell_header is not None else text)
            self._cell = None
        elif tag == "table" and self._table is not None:
            self.tables.append(self._table)
        elif tag == "li" and self._note is not None and self.tables:
            self.tables[-1].notes.append("".join(self._note).strip())
            self._note = None
        elif tag == "ol":
            self._in_notes = False
        if tag == "table":
            self._table, self._block = None, {}

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._title is not None:
            self._title.append(data)
        elif self._note is not None:
            self._note.append(data)


def parse_page(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    parser.close()
    return parser


def markdown_tables(text: str) -> list[tuple[str, list[str], list[list[str]], list[str]]]:
    """(title, headers, rows, notes) of each table in ``reports.render``'s Markdown."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("### "):
            title, i = lines[i][4:], i + 1
            while i < len(lines) and not lines[i].startswith("|"):
                i += 1
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            notes = []
            while i < len(lines) and not lines[i].startswith("### "):
                if lines[i].startswith("[") and "] " in lines[i]:
                    notes.append(lines[i].split("] ", 1)[1])
                i += 1
            out.append((title, block[0], block[2:], notes))
        else:
            i += 1
    return out
