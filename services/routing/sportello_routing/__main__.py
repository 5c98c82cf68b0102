"""``python -m sportello_routing``: serve with uvicorn on SERVICE_HOST:SERVICE_PORT.

``python -m sportello_routing train --csv FILE --text-columns A,B --label-column C``: start
the learned triage from an export of the previous tool. Each row becomes a lesson (the
text columns joined; the label and the optional group column made slugs, so that
"Hardware" teaches the policy's ``hardware`` category), then a model is trained and put in
use when it measures no worse than the current one; running replicas switch to it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import re
import sys
from pathlib import Path

from sportello_contracts import utc_now
from sportello_routing.app import create_app, learner_of
from sportello_routing.domain import Lesson
from sportello_routing.settings import RoutingSettings
from sportello_routing.store import RoutingStore
from sportello_runtime.app import build_service
from sportello_runtime.serve import serve


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.strip().lower()).strip("-")


def read_lessons(path: Path, text_columns: list[str], label_column: str,
                 group_column: str | None, language_column: str | None) -> list[Lesson]:
    csv.field_size_limit(1 << 24)
    with path.open(newline="", encoding="utf-8-sig") as source:
        reader = csv.DictReader(source)
        wanted = [*text_columns, label_column, *filter(None, [group_column, language_column])]
        missing = [c for c in wanted if c not in (reader.fieldnames or [])]
        if missing:
            sys.exit(f"train: {path} has no column {', '.join(map(repr, missing))} "
                     f"(it has {', '.join(reader.fieldnames or [])})")
        now, lessons = utc_now(), []
        for row_number, row in enumerate(reader, start=2):
            text = "\n".join((row[c] or "").strip() for c in text_columns).strip()
            label = slug(row[label_column] or "")
            if not text or not label:
                continue
            key = hashlib.sha256(f"{path.name}:{row_number}".encode()).hexdigest()[:24]
            group = slug(row[group_column] or "") if group_column else ""
            language = (row[language_column] or "").strip()[:2].lower() if language_column \
                else ""
            lessons.append(Lesson(f"import-{key}", text, label, group or None, language or None,
                                  now))
    return lessons


async def train_from_csv(args: argparse.Namespace, settings: RoutingSettings) -> None:
    lessons = read_lessons(Path(args.csv), [c.strip() for c in args.text_columns.split(",")],
                           args.label_column, args.group_column, args.language_column)
    sys.stderr.write(f"{len(lessons):,} lessons read from {args.csv}\n")
    service = build_service(settings)
    learner = learner_of(service, RoutingStore(service.store, service.relay))
    try:
        await learner.store.add_lessons(lessons)
        record = await learner.train(trigger="import", actor="command line")
    finally:
        await service.store.close()
    for head, quality in record["quality"].items():
        sys.stderr.write(f"{head}: accuracy {quality['accuracy']:.3f}, macro-F1 "
                         f"{quality['macro_f1']:.3f} on {quality['examples']:,} held-back "
                         f"tickets\n")
    state = "in use" if record["activated"] else "kept aside"
    sys.stderr.write(f"model {record['_id']} ({record['size']:,} bytes, trained in "
                     f"{record['seconds']:.1f} s) {state}: {record['verdict']}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sportello_routing")
    commands = parser.add_subparsers(dest="command")
    train = commands.add_parser("train", help="learn triage from an export of tickets (CSV)")
    train.add_argument("--csv", required=True, help="the export, with a header row")
    train.add_argument("--text-columns", required=True,
                       help="columns joined into the ticket's text, e.g. subject,description")
    train.add_argument("--label-column", required=True, help="the category each ticket had")
    train.add_argument("--group-column", help="the first-level group each ticket went to")
    train.add_argument("--language-column", help="the requester's language (it, en, ...)")
    args = parser.parse_args(argv)
    settings = RoutingSettings()
    if args.command == "train":
        asyncio.run(train_from_csv(args, settings))
    else:
        serve(create_app, settings)


if __name__ == "__main__":
    main()
