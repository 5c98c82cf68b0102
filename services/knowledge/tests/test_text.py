"""Markdown rendering that lets nothing dangerous or foreign into a page, and a person's
words turned into a query that carries no query syntax."""

from __future__ import annotations

from html.parser import HTMLParser

from sportello_knowledge.domain.text import MAX_QUERY_WORDS, render, search_words


def test_markdown_renders_headings_lists_links_and_code() -> None:
    html = render("# Titolo\n\n- uno\n- due\n\n[guida](https://example.org/a) `ipconfig`")
    assert "<h1>Titolo</h1>" in html
    assert "<li>uno</li>" in html
    assert '<a href="https://example.org/a" rel="noopener noreferrer nofollow">guida</a>' in html
    assert "<code>ipconfig</code>" in html


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.seen


def test_no_script_and_no_event_handlers_whatever_the_markdown_holds() -> None:
    html = render('<script>alert(1)</script>\n\n<img src=x onerror="alert(1)">\n\n'
                  "[x](javascript:alert(1)) [y](<javascript:alert(2)>)")
    seen = tags_of(html)
    assert {tag for tag, _ in seen} <= {"p", "a"}  # raw HTML is shown as text
    for _, attrs in seen:
        assert not any(name.startswith("on") for name in attrs)
        assert not (attrs.get("href") or "").startswith("javascript")


def test_images_load_only_from_our_own_origin() -> None:
    html = render("![a](/static/a.png) ![b](https://tracker.example/b.png) ![c](//cdn.x/c.png)")
    assert 'src="/static/a.png"' in html
    assert "tracker.example" not in html
    assert "cdn.x" not in html


def test_search_words_drop_the_engines_syntax_and_keep_the_words() -> None:
    assert search_words('title:VPN AND "errore 809" OR (stampante)') == (
        "title VPN errore 809 stampante")
    assert search_words("   ") == ""
    assert len(search_words("parola " * 100).split()) == MAX_QUERY_WORDS
