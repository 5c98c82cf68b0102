"""The search index on local disk: stemming in Italian and English, weights, filters,
snippets, typos, and a rebuild equal to the index kept live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sportello_knowledge.index import Entry, IndexBusy, Query, SearchIndex, terms

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def article(ref: str, title: str, body: str, *, language: str = "it", audience: str = "public",
            status: str = "published", category: str | None = "hardware") -> Entry:
    return Entry(key=f"article:{ref}", kind="article", ref=ref, title=title, body=body,
                 language=language, audience=audience, status=status, updated_at=T0,
                 category=category)


def case(ref: str, title: str, body: str, language: str = "it") -> Entry:
    return Entry(key=f"case:{ref}", kind="case", ref=ref, number=f"HD-{ref}", title=title,
                 body=body, language=language, audience="internal", status="solved",
                 updated_at=T0)


LIBRARY = [
    article("stampante", "La stampante non stampa",
            "Se la stampante del terzo piano è bloccata, riavviarla e controllare la carta."),
    article("printer", "The printer jams", "When the printer on floor three jams, restart it.",
            language="en"),
    article("vpn", "VPN errore 809", "Rigenerare il profilo VPN dal portale.",
            category="network"),
    article("vpn-internal", "VPN: rinnovo certificato del concentratore",
            "Procedura interna per il certificato della VPN.", audience="internal",
            category="network"),
    article("draft", "Stampante di rete in bozza", "Bozza.", status="draft"),
    article("body-only", "Carta inceppata", "Quando la stampante segnala carta inceppata..."),
    case("t1", "Stampanti bloccate",
         "Tutte le stampanti del piano bloccate; riavviato lo spooler."),
]


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[SearchIndex]:
    found = SearchIndex(tmp_path / "index")
    assert not await found.open()  # nothing there yet: the caller would rebuild
    await found.put(LIBRARY)
    yield found
    await found.close()


def refs(results: object) -> list[str]:
    return [h.ref for h in results.hits]  # type: ignore[attr-defined]


async def test_italian_and_english_stemming(index: SearchIndex) -> None:
    assert "stampante" in refs(await index.search(Query("stampanti", languages=("it",))))
    assert refs(await index.search(Query("printers", languages=("en",)))) == ["printer"]
    assert terms("Le stampanti non stampano", "it") == ["stampant", "stamp"]  # stop word out


async def test_the_title_weighs_more_than_the_body(index: SearchIndex) -> None:
    found = refs(await index.search(Query("stampante", languages=("it",), kinds=("article",),
                                          statuses=("published",))))
    assert found.index("stampante") < found.index("body-only")


async def test_filters_by_language_audience_status_kind_and_category(index: SearchIndex) -> None:
    everything = refs(await index.search(Query("stampante", limit=20)))
    assert {"stampante", "draft", "t1"} <= set(everything)
    assert "draft" not in refs(await index.search(Query("stampante", statuses=("published",))))
    assert refs(await index.search(Query("stampante", kinds=("case",)))) == ["t1"]
    assert refs(await index.search(Query("vpn", category="network", audiences=("public",)))) == [
        "vpn"]
    assert refs(await index.search(Query("printer", languages=("it",)))) == []


async def test_the_public_audience_never_sees_internal_articles_whatever_is_typed(
        index: SearchIndex) -> None:
    public = Query("", audiences=("public",), statuses=("published",), kinds=("article",))
    for words in ("VPN certificato concentratore", "audience:internal VPN",
                  "vpn OR audience:internal", "*", 'status:draft "stampante"'):
        found = await index.search(Query(words, audiences=public.audiences,
                                         statuses=public.statuses, kinds=public.kinds))
        assert not {"vpn-internal", "draft", "t1"} & set(refs(found)), words


async def test_snippets_mark_the_words_found_and_escape_the_rest(tmp_path: Path) -> None:
    index = SearchIndex(tmp_path / "snippets")
    await index.open()
    await index.put([article("x", "Script", "Non incollare <script>alert(1)</script> nella "
                                            "stampante, mai.")])
    hit = (await index.search(Query("stampante"))).hits[0]
    assert "<b>stampante</b>" in hit.snippet
    assert "<script>" not in hit.snippet
    assert "&lt;script&gt;" in hit.snippet
    await index.close()


async def test_a_typo_still_finds_but_never_outranks_the_exact_word(index: SearchIndex) -> None:
    assert "stampante" in refs(await index.search(Query("stampnte", languages=("it",))))
    assert refs(await index.search(Query("priner", languages=("en",)))) == ["printer"]
    no_typos = await index.search(Query("stampnte", languages=("it",), typos=False))
    assert no_typos.total == 0


async def test_words_that_are_only_syntax_find_nothing(index: SearchIndex) -> None:
    found = await index.search(Query('"" : ( ) AND OR'))
    assert (found.total, found.words) == (0, "")


async def test_replacing_and_removing_by_key(index: SearchIndex) -> None:
    await index.put([article("vpn", "VPN errore 812", "Nuovo testo.", category="network")],
                    removed=["article:body-only"])
    assert refs(await index.search(Query("812"))) == ["vpn"]
    assert refs(await index.search(Query("809"))) == []
    assert "body-only" not in refs(await index.search(Query("inceppata")))


async def test_a_rebuild_equals_the_index_kept_live_and_swaps_without_a_gap(
        index: SearchIndex) -> None:
    await index.put([article("vpn", "VPN errore 812", "Nuovo testo.", category="network")],
                    removed=["article:body-only"])
    queries = [Query(w, limit=20) for w in ("stampante", "vpn", "printer", "812", "spooler")]
    live = [refs(await index.search(q)) for q in queries]
    live_keys = index.keys()
    final = [e for e in LIBRARY if e.ref not in ("vpn", "body-only")] + [
        article("vpn", "VPN errore 812", "Nuovo testo.", category="network")]
    seen_during: list[list[str]] = []

    async def batches() -> AsyncIterator[list[Entry]]:
        for entry in final:
            seen_during.append(refs(await index.search(Query("stampante", limit=20))))
            yield [entry]

    assert await index.rebuild(batches) == len(final)
    assert [refs(await index.search(q)) for q in queries] == live
    assert index.keys() == live_keys
    assert all(found == live[0] for found in seen_during)  # the old one answered meanwhile


async def test_the_index_stays_on_disk_and_has_one_writer(tmp_path: Path) -> None:
    first = SearchIndex(tmp_path / "kept")
    await first.open()
    await first.put(LIBRARY)
    with pytest.raises(IndexBusy):
        await SearchIndex(tmp_path / "kept").open()
    await first.close()
    again = SearchIndex(tmp_path / "kept")
    assert await again.open()
    assert again.size == len(LIBRARY)
    await again.close()
