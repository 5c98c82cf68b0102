"""Text rules: Markdown to safe HTML, and a requester's words to a search the engine takes.

Both are pure. Rendering never lets a script or a resource from another origin into the
page: raw HTML in the Markdown is shown as text, the HTML is cleaned to an allow-list, and
an image must come from our own origin (a relative path).
"""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "img",
    "li", "ol", "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}}


def _same_origin_only(tag: str, attribute: str, value: str) -> str | None:
    """Images load only from our origin: a page must not call anyone else when read."""
    if tag == "img" and attribute == "src" and (not value.startswith("/")
                                                or value.startswith("//")):
        return None
    return value


def render(markdown: str) -> str:
    """An article's body as HTML that is safe to put in a page as it is."""
    return nh3.clean(
        _markdown.render(markdown), tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow",
        attribute_filter=_same_origin_only)


_NOT_A_WORD = re.compile(r"[^\w]+", re.UNICODE)
MAX_QUERY_WORDS = 32


def search_words(text: str) -> str:
    """What a person typed, as plain words: the engine's query syntax (fields, quotes,
    boolean operators, ranges) is not theirs to use, and a ticket's text is full of it.
    Long texts (a ticket's description) keep their first ``MAX_QUERY_WORDS`` words."""
    words = [w for w in _NOT_A_WORD.sub(" ", text).split() if w.upper() not in {
        "AND", "OR", "NOT", "IN", "TO"}]
    return " ".join(words[:MAX_QUERY_WORDS])
