"""The monthly improvement report as the coordinator reads it: one self-contained HTML page
(charts drawn here as inline SVG by pygal, nothing loaded from elsewhere, printable), and
the same numbers as CSV and JSON, in Italian or English."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Mapping
from typing import Any

import pygal
from pygal.style import Style

from sportello_analytics.domain.findings import HEADLINES, flatten

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Service desk: monthly improvement report", "month": "Month",
        "figure": "Figure", "this": "This month", "before": "Previous month",
        "change": "Change", "findings": "Findings", "worse": "What got worse",
        "nothing_worse": "Nothing got noticeably worse.",
        "articles": "Recurring problems that deserve an article",
        "training": "Departments that would gain from training",
        "training_line": "{department}: {solved} of {tickets} tickets solved at first contact",
        "levels": "Levels that breach most", "levels_line": "{level}: {breaches} SLA breaches",
        "none": "None this month.", "per_day": "Tickets per day", "created": "opened",
        "resolved": "resolved", "categories": "Tickets per category",
        "departments": "Tickets per department", "satisfaction": "Satisfaction (ratings)",
        "sla": "SLA compliance", "generated": "Generated", "tickets": "tickets",
        "worse_line": "{figure}: {before} → {now} ({relative})",
        "created_h": "Tickets opened", "resolved_h": "Tickets resolved",
        "first_response_median_s": "Time to first response (median)",
        "resolution_median_s": "Time to resolution (median)",
        "first_response_business_median_s": "Time to first response, business hours (median)",
        "resolution_business_median_s": "Time to resolution, business hours (median)",
        "first_contact_resolution": "First-contact resolution",
        "escalation_rate": "Escalation rate", "reopen_rate": "Reopen rate",
        "sla_first_response_compliance": "SLA compliance, first response",
        "sla_resolution_compliance": "SLA compliance, resolution",
        "satisfaction_h": "Satisfaction (1-5)",
    },
    "it": {
        "title": "Service desk: rapporto mensile di miglioramento", "month": "Mese",
        "figure": "Indicatore", "this": "Questo mese", "before": "Mese precedente",
        "change": "Variazione", "findings": "Cosa emerge", "worse": "Cosa è peggiorato",
        "nothing_worse": "Niente è peggiorato in modo rilevante.",
        "articles": "Problemi ricorrenti che meritano un articolo",
        "training": "Reparti che trarrebbero vantaggio da formazione",
        "training_line": "{department}: {solved} richieste su {tickets} risolte al primo "
                         "contatto",
        "levels": "Livelli con più violazioni", "levels_line": "{level}: {breaches} violazioni SLA",
        "none": "Nessuno questo mese.", "per_day": "Richieste al giorno", "created": "aperte",
        "resolved": "risolte", "categories": "Richieste per categoria",
        "departments": "Richieste per reparto", "satisfaction": "Soddisfazione (voti)",
        "sla": "Rispetto degli SLA", "generated": "Generato", "tickets": "richieste",
        "worse_line": "{figure}: {before} → {now} ({relative})",
        "created_h": "Richieste aperte", "resolved_h": "Richieste risolte",
        "first_response_median_s": "Tempo alla prima risposta (mediana)",
        "resolution_median_s": "Tempo di risoluzione (mediana)",
        "first_response_business_median_s": "Tempo alla prima risposta, orario lavorativo "
                                            "(mediana)",
        "resolution_business_median_s": "Tempo di risoluzione, orario lavorativo (mediana)",
        "first_contact_resolution": "Risoluzione al primo contatto",
        "escalation_rate": "Tasso di escalation", "reopen_rate": "Tasso di riapertura",
        "sla_first_response_compliance": "Rispetto SLA, prima risposta",
        "sla_resolution_compliance": "Rispetto SLA, risoluzione",
        "satisfaction_h": "Soddisfazione (1-5)",
    },
}
STYLE = Style(background="white", plot_background="white", foreground="#222",
              foreground_strong="#111", foreground_subtle="#666",
              colors=("#0b57a4", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00"))
CSS = """body{font:14px/1.45 system-ui,sans-serif;color:#1b1b1b;max-width:60rem;margin:1.5rem auto;
padding:0 1rem}h1{font-size:1.6rem}table{border-collapse:collapse;margin:.5rem 0 1rem}
td,th{border:1px solid #bbb;padding:.25rem .6rem;text-align:left}td.n{text-align:right}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:1rem}figure{margin:0}
.worse{color:#a00}@media print{.charts{grid-template-columns:1fr 1fr}body{margin:0}}"""


def name_of(figure: str, words: Mapping[str, str]) -> str:
    """A figure's heading: its ``_h`` form where the plain word means something else."""
    return words.get(f"{figure}_h") or words.get(figure) or figure


def shown(value: Any, figure: str) -> str:
    """A figure as people read it: durations in hours, shares in per cent."""
    if value is None:
        return "—"
    if figure.endswith("_s"):
        return f"{value / 3600:.1f} h"
    if figure in ("created", "resolved"):
        return f"{value:,.0f}"
    if figure == "satisfaction":
        return f"{value:.2f}"
    return f"{value * 100:.1f}%"


def to_csv(report: Mapping[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "name", "value"])
    for section, name, value in flatten(report["kpis"]):
        writer.writerow([section, name, "" if value is None else value])
    return out.getvalue()


def _svg(chart: pygal.graph.graph.Graph) -> str:
    """The chart without its script (tooltips): a page with no script at all."""
    svg: str = chart.render(is_unicode=True)
    return re.sub(r"<script.*?</script>", "", svg, flags=re.S)


def _chart(kind: type[pygal.graph.graph.Graph], title: str, labels: list[str],
           series: list[tuple[str, list[float]]], **options: Any) -> str:
    chart = kind(js=[], disable_xml_declaration=True, style=STYLE, width=640, height=320,
                 title=title, show_legend=len(series) > 1, legend_at_bottom=True,
                 x_label_rotation=45 if len(labels) > 10 else 0, truncate_label=-1,
                 **options)
    chart.x_labels = labels
    for name, values in series:
        chart.add(name, values)
    return f"<figure>{_svg(chart)}</figure>"


def to_html(report: Mapping[str, Any]) -> str:
    lang = report["language"]
    w = WORDS[lang]
    kpis = report["kpis"]
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(name_of(f, w))}</td><td class=n>{shown(kpis['change'][f]['now'], f)}</td>"
        f"<td class=n>{shown(kpis['change'][f]['before'], f)}</td></tr>" for f in HEADLINES)
    found = report["findings"]
    worse = "".join(
        "<li class=worse>" + e(w["worse_line"].format(
            figure=name_of(f["figure"], w), before=shown(f["before"], f["figure"]),
            now=shown(f["now"], f["figure"]), relative=f"{f['relative'] * 100:+.0f}%"))
        + "</li>" for f in found["worse"]) or f"<li>{e(w['nothing_worse'])}</li>"
    articles = "".join(f"<li>{e(str(a['title']))} ({a['tickets']:,.0f} {w['tickets']})</li>"
                       for a in found["articles_deserved"]) or f"<li>{e(w['none'])}</li>"
    training = "".join("<li>" + e(w["training_line"].format(
        department=t["department"], solved=f"{t['solved_at_first_contact']:,.0f}",
        tickets=f"{t['tickets']:,.0f}")) + "</li>" for t in found["training"]
    ) or f"<li>{e(w['none'])}</li>"
    levels = "".join("<li>" + e(w["levels_line"].format(
        level=lv["level"], breaches=f"{lv['sla_breaches']:,.0f}")) + "</li>"
        for lv in found["breaching_levels"]) or f"<li>{e(w['none'])}</li>"
    days = kpis["per_day"]
    charts = "".join([
        _chart(pygal.Bar, w["per_day"], [d["day"][-2:] for d in days],
               [(w["created"], [d["created"] for d in days]),
                (w["resolved"], [d["resolved"] for d in days])]),
        _chart(pygal.Bar, w["sla"], [name_of(f"sla_{t}_compliance", w) for t in (
            "first_response", "resolution")],
               [("%", [round((kpis["sla"][t]["compliance"] or 0) * 100, 1)
                       for t in ("first_response", "resolution")])], range=(0, 100)),
        _chart(pygal.HorizontalBar, w["categories"],
               [c["category"] for c in kpis["top_categories"]],
               [(w["tickets"], [c["tickets"] for c in kpis["top_categories"]])]),
        _chart(pygal.Bar, w["satisfaction"], ["1", "2", "3", "4", "5"],
               [(w["satisfaction"], [kpis["satisfaction"]["distribution"][s]
                                     for s in ("1", "2", "3", "4", "5")])]),
    ])
    departments = "".join(
        f"<tr><td>{e(d['department'])}</td><td class=n>{d['tickets']:,.0f}</td>"
        f"<td class=n>{d['sla_breaches']:,.0f}</td></tr>" for d in kpis["departments_by_tickets"])
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{e(w['title'])} {e(report['month'])}</title><style>{CSS}</style></head>"
        f"<body><main><h1>{e(w['title'])}</h1>"
        f"<p>{e(w['month'])}: <strong>{e(report['month'])}</strong> · {e(w['generated'])}: "
        f"{e(report['generated_at'][:16].replace('T', ' '))} UTC</p>"
        f"<table><thead><tr><th>{e(w['figure'])}</th><th>{e(w['this'])}</th>"
        f"<th>{e(w['before'])}</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<h2>{e(w['findings'])}</h2><h3>{e(w['worse'])}</h3><ul id=worse>{worse}</ul>"
        f"<h3>{e(w['articles'])}</h3><ul id=articles>{articles}</ul>"
        f"<h3>{e(w['training'])}</h3><ul id=training>{training}</ul>"
        f"<h3>{e(w['levels'])}</h3><ul id=levels>{levels}</ul>"
        f"<div class=charts>{charts}</div>"
        f"<h2>{e(w['departments'])}</h2><table><thead><tr><th></th><th>{e(w['tickets'])}</th>"
        f"<th>SLA</th></tr></thead><tbody>{departments}</tbody></table>"
        f"</main></body></html>")


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src data:; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
