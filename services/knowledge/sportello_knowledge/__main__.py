"""``python -m sportello_knowledge``: serve with uvicorn on SERVICE_HOST:SERVICE_PORT.

``python -m sportello_knowledge reindex``: rebuild the search index from MongoDB, with a
progress bar and the rate. Without ``--url`` it rebuilds ``INDEX_DIR`` here (no replica
may be running on that folder: one writer per index); with ``--url`` it asks that running
replica to rebuild its own, with no gap in service, and follows it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import httpx

from sportello_knowledge.app import create_app
from sportello_knowledge.index import IndexBusy, SearchIndex
from sportello_knowledge.service.indexing import IndexKeeper
from sportello_knowledge.service.metrics import KnowledgeMetrics
from sportello_knowledge.settings import KnowledgeSettings
from sportello_knowledge.store import KnowledgeStore
from sportello_runtime.app import build_service
from sportello_runtime.progress import progress_bar
from sportello_runtime.serve import serve


async def reindex_here(settings: KnowledgeSettings) -> int:
    service = build_service(settings)
    store = KnowledgeStore(service.store, service.relay)
    index = SearchIndex(settings.index_dir)
    keeper = IndexKeeper(index, store, KnowledgeMetrics.registered_on(service.metrics))
    started = time.monotonic()
    try:
        await index.open()
        count = await keeper.rebuild(progress_bar("docs"))
    finally:
        await index.close()
        await service.store.close()
    elapsed = time.monotonic() - started
    sys.stderr.write(f"\n{count:,} documents indexed in {elapsed:.1f} s "
                     f"({count / max(elapsed, 1e-6):,.0f}/s) into {settings.index_dir}\n")
    return count


def reindex_there(url: str, settings: KnowledgeSettings) -> None:
    token = settings.service_token.get_secret_value() if settings.service_token else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        answer = client.post("/index/rebuild")
        if answer.status_code not in (202, 409):
            answer.raise_for_status()
        bar = progress_bar("docs")
        while True:  # a person watching a bar: asking every half second is what it takes
            state = client.get("/index").raise_for_status().json()
            progress = state.get("rebuilding")
            if not progress:
                break
            bar(int(progress["done"]), int(progress["total"]))
            time.sleep(0.5)
        sys.stderr.write(f"\nrebuilt: {state['documents']:,} documents, built at "
                         f"{state['built_at']}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sportello_knowledge")
    commands = parser.add_subparsers(dest="command")
    reindex = commands.add_parser("reindex", help="rebuild the search index from MongoDB")
    reindex.add_argument("--url", help="a running replica to rebuild its own index")
    args = parser.parse_args(argv)
    settings = KnowledgeSettings()
    if args.command == "reindex":
        if args.url:
            reindex_there(args.url, settings)
        else:
            try:
                asyncio.run(reindex_here(settings))
            except IndexBusy as exc:
                sys.exit(f"reindex: {exc}; rebuild a running replica's index with --url")
        return
    serve(create_app, settings)


if __name__ == "__main__":
    main()
