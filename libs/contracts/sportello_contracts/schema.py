"""Write the JSON Schema of every event (envelope + payload) to a folder: ``make contracts``."""

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


def write_all(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type in sorted(EVENT_PAYLOADS):
        path = folder / f"{event_type}.schema.json"
        path.write_text(json.dumps(event_schema(event_type), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/events")
    for path in write_all(target):
        print(path)
