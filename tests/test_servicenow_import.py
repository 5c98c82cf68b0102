"""The whole UCI incident event log (../shared/data: 141,712 updates of 24,918 ServiceNow
incidents) imported through analytics' own path, by its command line, into a running
analytics service: its KPIs equal what a few lines compute from the CSV directly."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import zipfile
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from support.system import System

pytestmark = pytest.mark.e2e

LOG = Path(__file__).resolve().parents[2] / "shared" / "data" / "incident-event-log" / \
    "incident_event_log.zip"


def independent() -> dict[str, Any]:
    """From the CSV alone: each incident as its last update left it."""
    with zipfile.ZipFile(LOG) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".csv"))
        rows = list(csv.reader(io.TextIOWrapper(archive.open(name), encoding="utf-8")))
    header, rows = rows[0], rows[1:]
    col = {name: header.index(name) for name in header}  # the first "category"
    last: dict[str, list[str]] = {}
    for row in rows:
        kept = last.get(row[0])
        key = (int(row[col["sys_mod_count"]]), when(row[col["sys_updated_at"]]))
        if kept is None or key > (int(kept[col["sys_mod_count"]]),
                                  when(kept[col["sys_updated_at"]])):
            last[row[0]] = row
    months: Counter[str] = Counter()
    spent: dict[str, list[float]] = defaultdict(list)
    for row in last.values():
        opened = when(row[col["opened_at"]])
        months[opened.strftime("%Y-%m")] += 1
        done = when(row[col["resolved_at"]]) or when(row[col["closed_at"]])
        if done is not None:
            spent[f"P{row[col['priority']]}"].append(max(0.0, (done - opened).total_seconds()))
    return {
        "months": months,
        "mean_resolution": {p: sum(s) / len(s) for p, s in spent.items()},
        "reopen_rate": sum(int(r[col["reopen_count"]]) > 0 for r in last.values()) / len(last),
        "sla_made": sum(r[col["made_sla"]] == "true" for r in last.values()) / len(last),
        "categories": Counter(f"category {r[col['category']]}" for r in last.values()
                              if r[col["category"]] != "?"),
    }


def when(value: str) -> datetime:
    if value == "?":
        return None  # type: ignore[return-value]
    return datetime.strptime(value, "%d/%m/%Y %H:%M").replace(tzinfo=UTC)


async def test_the_whole_uci_log_gives_the_kpis_the_csv_gives(system: System) -> None:
    assert LOG.is_file(), f"the UCI log is read from {LOG}"
    analytics = await system.start("analytics")
    imported = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "sportello_analytics", "import-servicenow",
                         str(LOG)],
        env={**os.environ, **analytics.env}, capture_output=True, text=True, timeout=600)
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert "imported 24,918 incidents" in imported.stderr
    expected = independent()
    async with system.client("analytics") as stats:
        async def kpis(since: str, until: str, **filters: str) -> dict[str, Any]:
            answer = await stats.get("/kpis", params={"from": since, "to": until, **filters},
                                     timeout=120)
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            return body

        everything = await kpis("2016-01-01", "2018-01-01")
        assert everything["created"] == 24_918 == sum(expected["months"].values())
        assert everything["reopen_rate"] == round(expected["reopen_rate"], 4)
        assert everything["sla"]["resolution"]["compliance"] == round(expected["sla_made"], 4)
        top = expected["categories"].most_common(10)
        assert [(c["category"], c["tickets"]) for c in everything["top_categories"]] == top
        for month, count in sorted(expected["months"].items()):
            year, number = (int(part) for part in month.split("-"))
            following = f"{year + number // 12}-{number % 12 + 1:02d}-01"
            assert (await kpis(f"{month}-01", following))["created"] == count, month
        for priority, mean in expected["mean_resolution"].items():
            figures = await kpis("2016-01-01", "2018-01-01", priority=priority)
            assert figures["resolution"]["mean_s"] == pytest.approx(mean, abs=0.1), priority
