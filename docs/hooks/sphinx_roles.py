"""MkDocs hook: show the Sphinx roles of docstrings as plain code in the API pages.

Docstrings name other objects the Sphinx way (``:class:`~fasm_es.errors.Rejection```),
which Markdown renders as the role's text followed by code. This keeps the
code and drops the role, shortening ``~a.b.C`` to ``C`` as Sphinx would, and
turns a reST literal-block marker (a paragraph ending in ``::``) into a colon.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|const):<code>(~?)([^<]*)</code>")
LITERAL_MARKER = re.compile(r"::</p>")


def _code(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    """Rewrite the roles in a rendered page (only API pages contain any)."""
    return LITERAL_MARKER.sub(":</p>", ROLE.sub(_code, html))
