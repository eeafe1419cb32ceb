"""A tiny document model rendered twice: Markdown (REPORT.md) and one self-contained HTML page.

Building the report once as blocks keeps the two outputs identical in content. Inline markup in text is
limited to **bold**, *italic* and `code`, which both renderers understand.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Image:
    path: str  # relative to the results directory
    title: str
    caption: str


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> None:
        self.blocks.extend(blocks)


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            out += [f"{'#' * (block.level + 1)} {block.text}", ""]
        elif isinstance(block, Para):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out += _md_table(block)
        elif isinstance(block, Image):
            out += [f"![{block.title}]({block.path})", "", f"*{block.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def to_html(doc: Document, root: Path) -> str:
    """One page with every image embedded as base64 PNG, so it can be mailed or attached as is."""
    body = [f"<h1>{_inline(doc.title)}</h1>"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(block.level + 1, 6)
            body.append(f"<h{level}>{_inline(block.text)}</h{level}>")
        elif isinstance(block, Para):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, Image):
            data = base64.b64encode((root / block.path).read_bytes()).decode("ascii")
            body.append(
                f'<figure><img alt="{html.escape(block.title)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{_inline(block.caption)}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head>\n<body><main>\n"
        + "\n".join(body)
        + "\n</main></body></html>\n"
    )


CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;background:#fafafa;margin:0}
main{max-width:1100px;margin:0 auto;padding:24px 32px;background:#fff}
h1{font-size:1.7em;border-bottom:2px solid #ddd;padding-bottom:.3em}
h2{font-size:1.35em;margin-top:1.8em;border-bottom:1px solid #eee}
h3{font-size:1.1em;margin-top:1.4em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0} tr:nth-child(even) td{background:#fafafa}
code{background:#f3f3f3;padding:0 3px;border-radius:3px;font-size:.92em}
figure{margin:1.2em 0} img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em;margin-top:.3em}
li{margin:.3em 0} .note{color:#666;font-size:.88em}
"""


def _md_table(table: Table) -> list[str]:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    lines = [row(table.header), "|" + "|".join("---" for _ in table.header) + "|"]
    lines += [row(r) for r in table.rows]
    lines.append("")
    if table.note:
        lines += [f"*{table.note}*", ""]
    return lines


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{_inline(h)}</th>" for h in table.header)
    rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in table.rows)
    note = f'<p class="note">{_inline(table.note)}</p>' if table.note else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{note}"


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_ITALIC = re.compile(r"\*([^*]+)\*")


def _inline(text: str) -> str:
    out = html.escape(text)
    out = _CODE.sub(r"<code>\1</code>", out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    return _ITALIC.sub(r"<em>\1</em>", out)
