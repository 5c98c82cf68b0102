"""Write the JSON Schema of every event (envelope + payload) to a folder: ``make contracts``;
``--check`` says which files differ from the models (the tests run it on ``docs/events``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sportello_contracts.envelope import EventEnvelope
from sportello_contracts.events import EVENT_PAYLOADS


def event_schema(event_type: str) -> dict[str, Any]:
    envelope = EventEnvelope.model_json_schema()
    payload = EVENT_PAYLOADS[event_type].model_json_schema(ref_template="#/$defs/{model}")
    defs = {**envelope.pop("$defs", {}), **payload.pop("$defs", {})}
    envelope["title"] = event_type
    envelope["description"] = (
        f"Routing key `{event_type}` on the events exchange. "
        + (payload.get("description") or "")
    ).strip()
    envelope["properties"]["type"] = {"const": event_type, "title": "Type"}
    envelope["properties"]["payload"] = payload
    if defs:
        envelope["$defs"] = defs
    return envelope


SUFFIX = ".schema.json"


def schema_text(event_type: str) -> str:
    return json.dumps(event_schema(event_type), indent=2, sort_keys=True) + "\n"


def write_all(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type in sorted(EVENT_PAYLOADS):
        path = folder / f"{event_type}{SUFFIX}"
        path.write_text(schema_text(event_type))
        written.append(path)
    return written


def drift(folder: Path) -> dict[str, str]:
    """Event type -> what is wrong with its published schema ("missing", "differs", "no
    such event"): empty when the folder says exactly what the models say."""
    found = {p.name[: -len(SUFFIX)]: p for p in folder.glob(f"*{SUFFIX}")}
    wrong = {t: "no such event" for t in found if t not in EVENT_PAYLOADS}
    for event_type in EVENT_PAYLOADS:
        path = found.get(event_type)
        if path is None:
            wrong[event_type] = "missing"
        elif path.read_text() != schema_text(event_type):
            wrong[event_type] = "differs"
    return dict(sorted(wrong.items()))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    target = Path(args[0] if args else "docs/events")
    if check:
        wrong = drift(target)
        for event_type, why in wrong.items():
            print(f"{target}/{event_type}{SUFFIX}: {why} (run `make contracts`)")
        return 1 if wrong else 0
    for path in write_all(target):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
