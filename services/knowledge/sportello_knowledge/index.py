"""The search index: tantivy on local disk, derived from MongoDB, one per replica.

Articles and archived cases are documents of one index. Each language has its own
fields, analysed with its own stemmer and stop words, so "stampanti" finds "stampante"
and "printers" finds "printer". Titles weigh more than bodies; a second, fuzzy reading
of the words (one typo) adds a little to the score, so a typo still finds but never
outranks the exact words.

The index lives in generations (``gen-*`` folders) under ``INDEX_DIR``; ``CURRENT``
names the one in use. A rebuild fills a new generation while the old one answers, then
swaps: searches never see a gap. Only this object writes, from one thread (tantivy also
locks the folder against a second writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tantivy

from sportello_knowledge.domain.text import search_words

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
"""Bump when the fields or analysers change: an index of another version is rebuilt."""
ANALYSERS = {"it": "italian", "en": "english"}
TITLE_BOOST = 3.0
TYPO_WEIGHT = 0.1
"""What a one-typo match adds: at 0.3 the fuzzy matches of 30,000 real tickets' words cost
about 0.01 of precision@5 (bench/knowledge_bench.py); at 0.1 they cost nothing and a
misspelt word still finds."""
SNIPPET_CHARS = 180
WRITER_HEAP = 64_000_000


@dataclass(frozen=True)
class Entry:
    """One searchable document: an article (its latest version) or an archived case."""

    key: str
    kind: str
    """"article" or "case"."""
    ref: str
    """The article's id, or the case's ticket id."""
    title: str
    body: str
    language: str
    audience: str
    status: str
    updated_at: datetime
    category: str | None = None
    tags: tuple[str, ...] = ()
    number: str = ""


@dataclass(frozen=True)
class Query:
    text: str
    languages: tuple[str, ...] = tuple(ANALYSERS)
    audiences: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    category: str | None = None
    limit: int = 10
    offset: int = 0
    typos: bool = True
    stemming: bool = True
    """Off only for the benchmark's baseline (plain BM25 on unstemmed words)."""


@dataclass(frozen=True)
class Hit:
    key: str
    kind: str
    ref: str
    number: str
    title: str
    language: str
    audience: str
    status: str
    category: str | None
    score: float
    snippet: str
    """HTML: the best passage, matched words in ``<b>``; escaped otherwise."""


@dataclass
class Results:
    hits: list[Hit]
    total: int
    words: str
    """The words searched for, after the query syntax was taken out."""


def _analyser(language: str | None) -> tantivy.TextAnalyzer:
    builder = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
               .filter(tantivy.Filter.remove_long(40)).filter(tantivy.Filter.lowercase()))
    if language is None:  # the baseline: words as written
        return builder.filter(tantivy.Filter.ascii_fold()).build()
    return (builder.filter(tantivy.Filter.stopword(language)).filter(tantivy.Filter.ascii_fold())
            .filter(tantivy.Filter.stemmer(language)).build())


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    for name in ("key", "kind", "ref", "number", "language", "audience", "status", "category",
                 "tags"):
        sb.add_text_field(name, stored=True, tokenizer_name="raw")
    for lang in ANALYSERS:
        sb.add_text_field(f"title_{lang}", stored=True, tokenizer_name=f"text_{lang}")
        sb.add_text_field(f"body_{lang}", stored=True, tokenizer_name=f"text_{lang}")
        sb.add_text_field(f"plain_{lang}", stored=False, tokenizer_name="plain")
    sb.add_date_field("updated_at", stored=True, fast=True)
    return sb.build()


SCHEMA = _schema()


def _open(path: Path) -> tantivy.Index:
    index = tantivy.Index(SCHEMA, path=str(path))
    for lang, name in ANALYSERS.items():
        index.register_tokenizer(f"text_{lang}", _analyser(name))
    index.register_tokenizer("plain", _analyser(None))
    return index


def _document(entry: Entry) -> tantivy.Document:
    lang = entry.language if entry.language in ANALYSERS else "en"
    doc = tantivy.Document(
        key=entry.key, kind=entry.kind, ref=entry.ref, number=entry.number,
        language=lang, audience=entry.audience, status=entry.status,
        category=entry.category or "", updated_at=entry.updated_at.astimezone(UTC))
    for tag in entry.tags:
        doc.add_text("tags", tag)
    doc.add_text(f"title_{lang}", entry.title)
    doc.add_text(f"body_{lang}", entry.body)
    doc.add_text(f"plain_{lang}", f"{entry.title}\n{entry.body}")
    return doc


def terms(text: str, language: str) -> list[str]:
    """The stems the index keeps for ``text``: what recurring problems are compared by."""
    return list(_ANALYSERS[language if language in _ANALYSERS else "en"].analyze(text))


_ANALYSERS = {lang: _analyser(name) for lang, name in ANALYSERS.items()}


class IndexBusy(RuntimeError):
    """Another process writes this index: a folder has one writer."""


def _writer(index: tantivy.Index, path: Path, heap: int = WRITER_HEAP, threads: int = 1) -> Any:
    try:
        return index.writer(heap, threads)
    except ValueError as exc:
        if "LockBusy" in str(exc):
            raise IndexBusy(f"{path} is being written by another process (a running "
                            "replica?): one writer per index") from exc
        raise


@dataclass
class Generation:
    path: Path
    index: tantivy.Index
    writer: Any | None = None
    built_at: float = field(default_factory=time.time)


class SearchIndex:
    """This replica's index. ``search`` runs on worker threads, every write on one thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="index-writer")
        self._current: Generation | None = None
        self.last_write: float | None = None

    # -- opening and generations ----------------------------------------------------------

    async def open(self) -> bool:
        """Open the current generation; False when there is none worth keeping (missing,
        unreadable, of another schema): the caller rebuilds."""
        opened: bool = await self._on_writer(self._open_current)
        return opened

    def _open_current(self) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        pointer = self.directory / "CURRENT"
        if pointer.exists():
            name, _, version = pointer.read_text().strip().partition(" ")
            path = self.directory / name
            if version == SCHEMA_VERSION and path.is_dir():
                try:
                    generation = Generation(path, _open(path))
                except ValueError as exc:
                    log.warning("index %s cannot be opened (%s): rebuilding", path, exc)
                else:
                    generation.writer = _writer(generation.index, path)
                    generation.built_at = pointer.stat().st_mtime
                    self._current = generation
                    return True
        self._current = self._new_generation()
        self._point_at(self._current)
        return False

    def _new_generation(self) -> Generation:
        path = self.directory / f"gen-{time.time_ns()}"
        path.mkdir(parents=True)
        return Generation(path, _open(path))

    def _point_at(self, generation: Generation) -> None:
        if generation.writer is None:
            generation.writer = _writer(generation.index, generation.path)
        pointer = self.directory / "CURRENT.tmp"
        pointer.write_text(f"{generation.path.name} {SCHEMA_VERSION}\n")
        os.replace(pointer, self.directory / "CURRENT")

    async def close(self) -> None:
        await self._on_writer(self._close)
        self._writes.shutdown(wait=True)

    def _close(self) -> None:
        if self._current is not None and self._current.writer is not None:
            with contextlib.suppress(Exception):
                self._current.writer.wait_merging_threads()
            self._current.writer = None

    # -- writing ------------------------------------------------------------------------

    async def _on_writer(self, job: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._writes, job, *args)

    async def put(self, entries: Sequence[Entry], removed: Sequence[str] = ()) -> None:
        """Add or replace ``entries`` (by key) and drop ``removed`` keys; one commit."""
        await self._on_writer(self._put, list(entries), list(removed))

    def _put(self, entries: list[Entry], removed: list[str]) -> None:
        generation = self._generation()
        writer = generation.writer
        assert writer is not None
        for key in [*removed, *(e.key for e in entries)]:
            writer.delete_documents_by_term("key", key)
        for entry in entries:
            writer.add_document(_document(entry))
        writer.commit()
        generation.index.reload()
        self.last_write = time.time()

    async def rebuild(self, batches: Callable[[], Any],
                      progress: Callable[[int], None] | None = None) -> int:
        """Fill a new generation from ``batches()`` (an async iterator of entry lists), then
        swap it in; the old one answers searches until the swap. Answers the count."""
        fresh = await self._on_writer(self._start_generation)
        count = 0
        async for batch in batches():
            await self._on_writer(self._add_all, fresh, batch)
            count += len(batch)
            if progress:
                progress(count)
        await self._on_writer(self._swap, fresh)
        return count

    def _start_generation(self) -> Generation:
        generation = self._new_generation()
        generation.writer = _writer(generation.index, generation.path, WRITER_HEAP * 4, 2)
        return generation

    @staticmethod
    def _add_all(generation: Generation, entries: Iterable[Entry]) -> None:
        assert generation.writer is not None
        for entry in entries:
            generation.writer.add_document(_document(entry))

    def _swap(self, fresh: Generation) -> None:
        assert fresh.writer is not None
        fresh.writer.commit()
        fresh.writer.wait_merging_threads()
        fresh.index.reload()
        fresh.writer = _writer(fresh.index, fresh.path)
        old, self._current = self._current, fresh
        fresh.built_at = time.time()
        self._point_at(fresh)
        if old is not None:
            old.writer = None
            shutil.rmtree(old.path, ignore_errors=True)  # open searchers keep their files
        for stale in self.directory.glob("gen-*"):
            if stale != fresh.path:
                shutil.rmtree(stale, ignore_errors=True)

    def _generation(self) -> Generation:
        if self._current is None:
            raise RuntimeError("the index is not open")
        return self._current

    # -- reading ------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._generation().index.searcher().num_docs if self._current else 0

    @property
    def built_at(self) -> float | None:
        return self._current.built_at if self._current else None

    async def search(self, query: Query) -> Results:
        return await asyncio.to_thread(self.search_now, query)

    def search_now(self, query: Query) -> Results:
        words = search_words(query.text)
        generation = self._generation()
        if not words:
            return Results([], 0, words)
        index = generation.index
        searcher = index.searcher()
        if query.stemming:
            fields = [f"{part}_{lang}" for lang in query.languages for part in ("title", "body")]
            boosts = {f: TITLE_BOOST for f in fields if f.startswith("title_")}
        else:
            fields = [f"plain_{lang}" for lang in query.languages]
            boosts = {}
        exact = index.parse_query(words, fields, field_boosts=boosts)
        text = exact
        if query.typos:
            fuzzy = index.parse_query(words, fields,
                                      fuzzy_fields={f: (False, 1, True) for f in fields})
            text = tantivy.Query.boolean_query([
                (tantivy.Occur.Should, exact),
                (tantivy.Occur.Should, tantivy.Query.boost_query(fuzzy, TYPO_WEIGHT))])
        clauses = [(tantivy.Occur.Must, text)]
        for name, values in (("audience", query.audiences), ("status", query.statuses),
                             ("kind", query.kinds), ("language", query.languages)):
            if values:
                clauses.append((tantivy.Occur.Must, tantivy.Query.term_set_query(
                    SCHEMA, name, list(values))))
        if query.category:
            clauses.append((tantivy.Occur.Must,
                            tantivy.Query.term_query(SCHEMA, "category", query.category)))
        found = searcher.search(tantivy.Query.boolean_query(clauses), query.limit,
                                count=True, offset=query.offset)
        snippets = {
            lang: tantivy.SnippetGenerator.create(searcher, exact, SCHEMA, f"body_{lang}")
            for lang in query.languages} if query.stemming and found.hits else {}
        for generator in snippets.values():
            generator.set_max_num_chars(SNIPPET_CHARS)
        hits = []
        for score, address in found.hits:
            doc = searcher.doc(address)
            lang = doc["language"][0]
            snippet = ""
            if lang in snippets:
                snippet = snippets[lang].snippet_from_doc(doc).to_html()
            if not snippet:
                body = (doc.get_first(f"body_{lang}") or "")[:SNIPPET_CHARS]
                snippet = html.escape(body)
            hits.append(Hit(
                key=doc["key"][0], kind=doc["kind"][0], ref=doc["ref"][0],
                number=doc["number"][0], title=doc.get_first(f"title_{lang}") or "",
                language=lang, audience=doc["audience"][0], status=doc["status"][0],
                category=doc["category"][0] or None, score=round(float(score), 4),
                snippet=snippet))
        total: int = getattr(found, "count", None) or 0  # not in the package's stubs
        return Results(hits, total, words)

    def keys(self) -> dict[str, datetime]:
        """Every key with its ``updated_at``: what a comparison with MongoDB needs."""
        searcher = self._generation().index.searcher()
        found = searcher.search(tantivy.Query.all_query(), max(searcher.num_docs, 1))
        answer = {}
        for _, address in found.hits:
            doc = searcher.doc(address)
            answer[doc["key"][0]] = doc["updated_at"][0]
        return answer
