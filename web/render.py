"""Model cards to safe HTML: Markdown rendered with raw HTML escaped and unsafe link targets dropped.

A model card is untrusted text from whoever published the adapter. It is rendered with Python-Markdown
with its raw-HTML handling removed (so ``<script>`` shows as text), and every ``href``/``src`` that is
not http(s), mailto, a fragment or a relative path is removed. The YAML front matter of a card is split
off and returned separately (shown as a small table), never rendered as Markdown.
"""

from __future__ import annotations

import re
from typing import Any

SAFE_URL = re.compile(r"^(https?:|mailto:|#|/(?!/)|\./|\.\./|[A-Za-z0-9_.\-]+(/|$|\?|#))", re.IGNORECASE)
FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.DOTALL)


def split_front_matter(card: str) -> tuple[dict[str, Any], str]:
    """Split ``---`` YAML front matter from a model card.

    Returns:
        (metadata, body); metadata is ``{}`` when there is none or it is not a YAML mapping.
    """
    m = FRONT_MATTER.match(card or "")
    if not m:
        return {}, card or ""
    import yaml

    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}, card
    return (meta if isinstance(meta, dict) else {}), card[m.end():]


def _is_safe_url(url: str) -> bool:
    cleaned = re.sub(r"[\x00-\x20]", "", url)  # browsers ignore whitespace/control chars in schemes
    return bool(SAFE_URL.match(cleaned))


def render_markdown(text: str, heading_shift: int = 2) -> str:
    """Render untrusted Markdown to HTML with raw HTML escaped and only safe link/image targets kept.

    Args:
        text: the Markdown.
        heading_shift: levels added to every heading (a card under the page's ``h2`` starts at ``h3``),
            capped at ``h6``, so the page keeps one ``h1`` and headings in order.
    """
    import markdown
    from markdown.treeprocessors import Treeprocessor

    class _SafeLinks(Treeprocessor):
        def run(self, root: Any) -> None:
            for el in root.iter():
                if re.fullmatch(r"h[1-6]", str(el.tag)):
                    el.tag = f"h{min(6, int(el.tag[1]) + heading_shift)}"
                for attr in ("href", "src"):
                    val = el.get(attr)
                    if val is not None and not _is_safe_url(val):
                        del el.attrib[attr]
                if el.tag == "a" and el.get("href", "").lower().startswith(("http:", "https:")):
                    el.set("rel", "nofollow noopener noreferrer")

    md = markdown.Markdown(extensions=["fenced_code", "tables", "sane_lists"], output_format="html")
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    md.treeprocessors.register(_SafeLinks(md), "loom_safe_links", 0)
    return md.convert(text or "")
