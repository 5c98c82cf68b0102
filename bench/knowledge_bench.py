"""Knowledge: does it suggest the right things, and how fast does it search, reindex and
suggest, on real public IT tickets (../shared/data, read from there, never copied).

    .venv/bin/python bench/knowledge_bench.py [--articles 100000] [--cases 30000]
                                              [--queries 1000] [--tickets 200]

1. Relevance. ``it-ticket-topics`` (38,322 English tickets, 8 topics): ``--cases`` of
   them are indexed as archived cases; for ``--queries`` others (not indexed), the
   suggestions are searched with the ticket's text as a new ticket's would be. A
   suggestion is right when it shares the ticket's topic: precision@5 and MRR@10, for
   Sportello's search (stemming, stop words, title weight, one-typo tolerance) and for the
   baseline, plain BM25 on the words as written (no stemming, no stop words).
2. Search latency at ``--articles`` articles (made of two tickets each, from all three
   labelled sets), in process, as the service runs it (query, filters, snippets): p50,
   p95, p99 for a requester's few words and for a whole ticket's text.
3. Reindex: the articles are put in MongoDB (``MONGO_URL`` or the emulator) and the index
   rebuilt from there with the code ``python -m sportello_knowledge reindex`` runs: rate.
4. Suggestion latency: a knowledge process (real, on that database: it rebuilds its index
   at start) gets ``--tickets`` ``ticket.created`` events at 20/s through RabbitMQ; from
   each publish to its ``kb.suggestions_ready``: p50, p95, p99.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
from common import ROOT, isolated_system, percentile_ms, write_report

from sportello_contracts import new_event
from sportello_contracts.events import Requester, TicketCreated
from sportello_knowledge.domain.articles import Article, ArticleStatus, Audience, Content
from sportello_knowledge.index import Entry, Query, SearchIndex
from sportello_knowledge.service.indexing import IndexKeeper
from sportello_knowledge.service.metrics import KnowledgeMetrics
from sportello_knowledge.store import KnowledgeStore, article_document, article_entry
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.store import MongoStore
from support.system import System
from support.wait import eventually

DATA = ROOT.parent / "shared" / "data"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def topics() -> list[tuple[str, str]]:
    with (DATA / "it-ticket-topics" / "train.csv").open(newline="", encoding="utf-8") as f:
        return [(row["Document"], row["Topic_group"]) for row in csv.DictReader(f)
                if row["Document"].strip()]


def all_texts() -> list[str]:
    texts = [doc for doc, _ in topics()]
    with (DATA / "ticket-assignment-groups" / "train.csv").open(newline="",
                                                                encoding="utf-8") as f:
        for row in csv.DictReader(f):
            texts.append(" ".join(v for k, v in row.items()
                                  if k and "description" in k.lower() and v))
    with (DATA / "endava-tickets-subset" / "train.csv").open(newline="", encoding="utf-8") as f:
        texts.extend(f"{row['title']} {row['body']}" for row in csv.DictReader(f))
    return [t for t in texts if t.strip()]


def title_of(text: str, words: int = 8) -> str:
    return " ".join(text.split()[:words])[:200]


def case_entry(n: int, text: str) -> Entry:
    """The data set has no subjects: a case is all body (a made-up title from its first
    words would count them twice)."""
    return Entry(key=f"case:{n}", kind="case", ref=str(n), title="", body=text,
                 language="en", audience="internal", status="solved", updated_at=T0)


async def relevance(cases: int, queries: int, rng: random.Random) -> dict[str, Any]:
    labelled = topics()
    rng.shuffle(labelled)
    indexed, held_out = labelled[:cases], labelled[cases:cases + queries]
    folder = Path(tempfile.mkdtemp(prefix="kb-relevance-"))
    index = SearchIndex(folder)
    await index.open()
    for start in range(0, len(indexed), 5_000):
        await index.put([case_entry(start + i, text)
                         for i, (text, _) in enumerate(indexed[start:start + 5_000])])
    topic_of = {str(n): topic for n, (_, topic) in enumerate(indexed)}

    def measure(stemming: bool, typos: bool) -> dict[str, float]:
        p5 = mrr = 0.0
        for text, topic in held_out:
            hits = index.search_now(Query(text, languages=("en",), kinds=("case",), limit=10,
                                          stemming=stemming, typos=typos)).hits
            same = [topic_of[h.ref] == topic for h in hits]
            p5 += sum(same[:5]) / 5
            mrr += next((1 / (rank + 1) for rank, ok in enumerate(same) if ok), 0.0)
        return {"precision_at_5": round(p5 / len(held_out), 4),
                "mrr_at_10": round(mrr / len(held_out), 4)}

    sportello, baseline = measure(True, True), measure(False, False)
    without_typos = measure(True, False)
    await index.close()
    shutil.rmtree(folder, ignore_errors=True)
    majority = Counter(t for _, t in indexed).most_common(1)[0]
    return {"cases_indexed": len(indexed), "queries": len(held_out),
            "sportello": sportello, "baseline_bm25_no_stemming": baseline,
            "sportello_without_typo_tolerance": without_typos,
            "majority_topic_share": round(majority[1] / len(indexed), 4)}


def synthetic_articles(count: int, rng: random.Random) -> list[Article]:
    """Each article is two real tickets' words: a title from the first, both as the body."""
    texts = all_texts()
    articles = []
    for n in range(count):
        first, second = rng.choice(texts), rng.choice(texts)
        content = Content(title=title_of(first), body=f"{first}\n\n{second}", language="en",
                          audience=Audience.PUBLIC if n % 3 else Audience.INTERNAL,
                          category=f"cat-{n % 20}")
        articles.append(Article(id=f"a{n:06d}", content=content, status=ArticleStatus.PUBLISHED,
                                version=2, owner="bench", created_at=T0, updated_at=T0,
                                translation_group=f"a{n:06d}", published_at=T0))
    return articles


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


async def latency(articles: list[Article], queries: int, rng: random.Random) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="kb-latency-"))
    index = SearchIndex(folder)
    await index.open()
    started = time.perf_counter()

    async def batches() -> Any:
        for start in range(0, len(articles), 5_000):
            yield [article_entry(a) for a in articles[start:start + 5_000]]

    await index.rebuild(batches)
    built_s = time.perf_counter() - started
    texts = [doc for doc, _ in topics()]
    answer: dict[str, Any] = {"articles": len(articles),
                              "index_build_from_memory_s": round(built_s, 1),
                              "index_build_rate_per_s": round(len(articles) / built_s)}
    for name, words in (("requester_query_4_words", 4), ("ticket_text_32_words", 32)):
        took = []
        for _ in range(queries):
            text = " ".join(rng.choice(texts).split()[:words])
            q = Query(text, languages=("en",), audiences=("public",), statuses=("published",),
                      kinds=("article",), limit=10)
            t = time.perf_counter()
            index.search_now(q)
            took.append(time.perf_counter() - t)
        took.sort()
        answer[name] = {"p50_ms": percentile_ms(took, 50), "p95_ms": percentile_ms(took, 95),
                        "p99_ms": percentile_ms(took, 99)}
    answer["index_size_mb"] = round(folder_bytes(folder) / 1e6, 1)
    await index.close()
    shutil.rmtree(folder, ignore_errors=True)
    return answer


async def reindex(system: System, articles: list[Article]) -> dict[str, Any]:
    mongo = MongoStore(system.mongo_url, system.database("knowledge"), app_name="bench")
    collection = mongo.collection("articles")
    started = time.perf_counter()
    for start in range(0, len(articles), 2_000):
        await collection.insert_many([{"_id": a.id, **article_document(a)}
                                      for a in articles[start:start + 2_000]])
    loaded_s = time.perf_counter() - started
    folder = Path(tempfile.mkdtemp(prefix="kb-reindex-"))
    index = SearchIndex(folder)
    await index.open()
    store = KnowledgeStore(mongo, relay=None)  # type: ignore[arg-type]  # reads only
    keeper = IndexKeeper(index, store, KnowledgeMetrics.registered_on(ServiceMetrics("bench")))
    started = time.perf_counter()
    count = await keeper.rebuild()
    took = time.perf_counter() - started
    await index.close()
    await mongo.close()
    shutil.rmtree(folder, ignore_errors=True)
    return {"documents": count, "load_into_mongodb_s": round(loaded_s, 1),
            "reindex_s": round(took, 1), "reindex_rate_per_s": round(count / took)}


async def suggestions(system: System, tickets: int, rng: random.Random) -> dict[str, Any]:
    knowledge = await system.start("knowledge", wait=False)
    await knowledge.wait_ready(timeout=600)
    async with system.client("knowledge") as kb:
        async def rebuilt() -> bool:
            state = (await kb.get("/index")).json()
            return state["rebuilding"] is None and state["documents"] > 0
        started = time.perf_counter()
        await eventually(rebuilt, timeout=600, interval=0.5, what="the start-up rebuild")
        startup_rebuild_s = time.perf_counter() - started
    texts = [doc for doc, _ in topics()]
    sent: dict[str, float] = {}
    took: list[float] = []
    connection = await aio_pika.connect(system.amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(f"{system.namespace}.events",
                                              aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "kb.suggestions_ready")

    async def on_ready(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        ticket_id = json.loads(message.body)["ticket_id"]
        if ticket_id in sent:
            took.append(time.perf_counter() - sent.pop(ticket_id))

    await queue.consume(on_ready, no_ack=True)
    for n in range(tickets):
        text = rng.choice(texts)
        ticket_id = uuid.uuid4().hex
        event = new_event(TicketCreated(
            ticket_id=ticket_id, number=f"HD-2026-{n:06d}", channel="web",
            requester=Requester(name="Bench", email="bench@example.org", language="en"),
            subject=title_of(text), description=text, created_at=datetime.now(UTC)),
            producer="bench", correlation_id=ticket_id)
        sent[ticket_id] = time.perf_counter()
        await exchange.publish(aio_pika.Message(event.to_json(),
                                                content_type="application/json"),
                               routing_key=event.type)
        await asyncio.sleep(0.05)  # 20 tickets a second, a busy desk's peak

    async def all_answered() -> bool:
        return len(took) == tickets
    await eventually(all_answered, timeout=60, what="every ticket's suggestions")
    await connection.close()
    took.sort()
    return {"tickets": tickets, "rate_per_s": 20,
            "startup_rebuild_s": round(startup_rebuild_s, 1),
            "p50_ms": percentile_ms(took, 50), "p95_ms": percentile_ms(took, 95),
            "p99_ms": percentile_ms(took, 99)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--cases", type=int, default=30_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--tickets", type=int, default=200)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"no data at {DATA}: this benchmark reads ../shared/data")
    rng = random.Random(17)
    results: dict[str, Any] = {"relevance": await relevance(args.cases, args.queries, rng)}
    print(results["relevance"], flush=True)
    articles = synthetic_articles(args.articles, rng)
    results["search_latency"] = await latency(articles, args.queries, rng)
    print(results["search_latency"], flush=True)
    async with isolated_system("kb-bench-") as run:
        results["reindex_from_mongodb"] = await reindex(run.system, articles)
        print(results["reindex_from_mongodb"], flush=True)
        results["suggestion_latency"] = await suggestions(run.system, args.tickets, rng)
        write_report("knowledge", run.report("knowledge_bench.py", **results))


if __name__ == "__main__":
    asyncio.run(main())
