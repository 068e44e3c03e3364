"""The report page's blocks written out twice: HTML from the template
templates/summary.html.j2 (one self-contained file, figures embedded, every text escaped),
and Markdown whose figures link to summary_files/."""
from __future__ import annotations

import base64
import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from brainlib.batch.report_page import FILES_DIR, Block


def inline_code(text: str) -> Markup:
    """The text escaped, with `backticked` spans as <code>."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def is_numeric(cell: Any) -> bool:
    """Cells shown right-aligned: numbers, and ratios such as 1.2×."""
    return bool(re.fullmatch(r"-?[\d.]+(e[-+]?\d+)?×?", str(cell)))


TEMPLATES = Environment(loader=PackageLoader("brainlib.batch", "templates"), autoescape=True,
                        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                        keep_trailing_newline=True)
TEMPLATES.filters.update(inline_code=inline_code, data_uri=data_uri)
TEMPLATES.tests["numeric"] = is_numeric


def to_html(title: str, blocks: list[Block]) -> str:
    return TEMPLATES.get_template("summary.html.j2").render(title=title, blocks=blocks)


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out += ["#" * int(b.kind[1]) + " " + b.text, ""]
        elif b.kind in ("p", "note"):
            out += [b.text, ""]
        elif b.kind == "alert":
            out += [f"**{b.text}**", ""]
        elif b.kind == "table":
            out += ["| " + " | ".join(b.head) + " |", "|" + "---|" * len(b.head)]
            out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in b.rows] + [""]
        elif b.kind == "figures":
            out += [" ".join(f"![{f.caption}]({FILES_DIR}/{f.name})" for f in b.figures), ""]
        elif b.kind == "code":
            out += ["```bash", b.text, "```", ""]
        elif b.kind == "links":
            out += [f"- [{t}]({h})" for t, h in b.links] + [""]
        elif b.kind == "details-start":
            out += [f"*{b.text}:*", ""]
    return "\n".join(out).rstrip() + "\n"
