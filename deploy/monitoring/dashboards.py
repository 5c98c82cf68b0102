"""Grafana dashboards as code: `python deploy/monitoring/dashboards.py` writes
dashboards/*.json. Compose provisions them; tests/test_monitoring.py runs every
panel's query against a real Prometheus.

Each dashboard is a list of (title, unit, queries); ``$job`` is the service picked at
the top of a dashboard that has the variable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}

Panel = tuple[str, str, list[tuple[str, str]]]
"""Title, unit, and the queries: (PromQL, legend)."""

DASHBOARDS: dict[str, tuple[str, bool, list[Panel]]] = {
    "overview": ("Sportello: overview", False, [
        ("Services up", "short", [('up{job=~"sportello-.*"}', "{{job}} {{instance}}")]),
        ("Requests per second", "reqps", [("job:http_requests:rate5m", "{{job}}")]),
        ("Share of 5xx answers", "percentunit", [("job:http_errors:ratio5m", "{{job}}")]),
        ("Tickets opened per minute, by channel", "short",
         [("sum by (channel) (rate(tickets_created_total[5m])) * 60", "{{channel}}")]),
        ("Events parked in 10 minutes", "short",
         [('sum by (job) (increase(events_consumed_total{outcome="dead_lettered"}[10m]))',
           "{{job}}")]),
        ("SLA targets breached (15 minutes)", "percentunit",
         [("sportello:sla_breach:ratio15m", "breached")]),
    ]),
    "services": ("Sportello: a service (rate, errors, duration)", True, [
        ("Requests per second, by route", "reqps",
         [('sum by (route) (rate(http_requests_total{job="$job"}[5m]))', "{{route}}")]),
        ("5xx per second, by route", "reqps",
         [('sum by (route) (rate(http_requests_total{job="$job", status=~"5.."}[5m]))',
           "{{route}}")]),
        ("p99 latency, by route", "s",
         [('histogram_quantile(0.99, sum by (route, le) '
           '(rate(http_request_duration_seconds_bucket{job="$job"}[5m])))', "{{route}}")]),
        ("CPU (cores)", "short",
         [('rate(process_cpu_seconds_total{job="$job"}[5m])', "{{instance}}")]),
        ("Resident memory", "bytes",
         [('process_resident_memory_bytes{job="$job"}', "{{instance}}")]),
        ("Garbage collector pauses, p99", "s",
         [('histogram_quantile(0.99, sum by (le) '
           '(rate(python_gc_pause_seconds_bucket{job="$job"}[5m])))', "p99")]),
    ]),
    "events": ("Sportello: events and queues", False, [
        ("Events published per second", "short",
         [("sum by (job, type) (rate(events_published_total[5m]))", "{{job}} {{type}}")]),
        ("Events consumed per second, by outcome", "short",
         [("sum by (job, outcome) (rate(events_consumed_total[5m]))", "{{job}} {{outcome}}")]),
        ("Handler time p99, by event", "s",
         [("histogram_quantile(0.99, sum by (job, type, le) "
           "(rate(event_handler_duration_seconds_bucket[5m])))", "{{job}} {{type}}")]),
        ("Outbox: events not yet confirmed", "short",
         [("outbox_pending_events", "{{job}} {{instance}}")]),
        ("Queues: messages ready", "short",
         [('rabbitmq_queue_messages_ready{queue=~"sportello\\\\..*"}', "{{queue}}")]),
        ("Queues: consumers", "short",
         [('rabbitmq_queue_consumers{queue=~"sportello\\\\..*"}', "{{queue}}")]),
    ]),
    "sla": ("Sportello: SLA", False, [
        ("Running or paused clocks", "short",
         [("sum by (metric) (sla_active_clocks)", "{{metric}}")]),
        ("Targets met, warned, breached per hour", "short",
         [("sum(increase(sla_met_total[1h]))", "met"),
          ("sum(increase(sla_warnings_total[1h]))", "warned"),
          ("sum(increase(sla_breaches_total[1h]))", "breached")]),
        ("Breaches per hour, by priority and level", "short",
         [("sum by (priority, level) (increase(sla_breaches_total[1h]))",
           "{{priority}} {{level}}")]),
        ("Share breached (15 minutes)", "percentunit",
         [("sportello:sla_breach:ratio15m", "breached")]),
        ("Timer lag p99", "s", [("sportello:sla_timer_lag_seconds:p99_5m", "p99")]),
    ]),
    "helpdesk": ("Sportello: the help desk", False, [
        ("Tickets opened per hour, by channel", "short",
         [("sum by (channel) (increase(tickets_created_total[1h]))", "{{channel}}")]),
        ("Waiting for an agent, by group", "short",
         [("sum by (group) (tickets_waiting)", "{{group}}")]),
        ("Assignments per hour, by level", "short",
         [("sum by (level) (increase(tickets_assigned_total[1h]))", "{{level}}")]),
        ("Escalations per hour, by kind", "short",
         [("sum by (from_level, to_level, kind) (increase(ticket_escalations_total[1h]))",
           "{{from_level}} to {{to_level}} ({{kind}})")]),
        ("Notices to requesters per hour", "short",
         [("sum by (kind) (increase(notifications_sent_total[1h]))", "{{kind}}")]),
        ("Self-service: share of problems solved without a ticket", "percentunit",
         [("max(kb_deflection_rate)", "deflection rate")]),
        ("Knowledge searches finding nothing", "percentunit",
         [("sum(rate(kb_zero_result_searches_total[1h])) / sum(rate(kb_searches_total[1h]))",
           "zero results")]),
    ]),
}


def dashboard(uid: str, title: str, per_service: bool, panels: list[Panel]) -> dict[str, Any]:
    built = []
    for n, (panel_title, unit, queries) in enumerate(panels):
        built.append({
            "id": n + 1, "type": "timeseries", "title": panel_title, "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (n % 2), "y": 8 * (n // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr,
                         "legendFormat": legend} for i, (expr, legend) in enumerate(queries)],
        })
    variables = [{
        "name": "job", "label": "Service", "type": "query", "datasource": DATASOURCE,
        "query": 'label_values(up{job=~"sportello-.*"}, job)', "refresh": 1,
        "current": {"text": "sportello-intake", "value": "sportello-intake"},
    }] if per_service else []
    return {"uid": f"sportello-{uid}", "title": title, "tags": ["sportello"],
            "schemaVersion": 39, "version": 1, "editable": True, "timezone": "browser",
            "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
            "templating": {"list": variables}, "panels": built}


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for uid, (title, per_service, panels) in DASHBOARDS.items():
        (HERE / f"{uid}.json").write_text(
            json.dumps(dashboard(uid, title, per_service, panels), indent=2) + "\n")


if __name__ == "__main__":
    main()
