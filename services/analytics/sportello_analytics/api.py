"""Analytics' HTTP API, behind the service token until the gateway fronts it: the KPIs of
a period with filters, and a ticket's facts."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse, Response

from sportello_analytics.report import SECURITY_HEADERS, to_csv, to_html
from sportello_analytics.service import (
    InvalidPeriod,
    Knowledge,
    Ledger,
    ReportMailer,
    ReportNotSendable,
    monthly_report,
    parse_day,
)
from sportello_runtime.http import ApiError, from_state

internal = APIRouter()


LedgerDep = Annotated[Ledger, Depends(from_state(Ledger, "ledger"))]
MailerDep = Annotated[ReportMailer, Depends(from_state(ReportMailer, "mailer"))]
Month = Annotated[str, Query(pattern=r"^[0-9]{4}-[0-9]{2}$", description="YYYY-MM")]
KnowledgeDep = Annotated[Knowledge, Depends(from_state(Knowledge, "knowledge"))]
Day = Annotated[str, Query(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                           description="YYYY-MM-DD")]
Dimension = Annotated[str | None, Query(max_length=200)]


def period(from_: str, to: str) -> tuple[date, date]:
    try:
        return parse_day(from_, "from"), parse_day(to, "to")
    except InvalidPeriod as exc:
        raise ApiError(422, "invalid", str(exc), field=exc.field) from exc


@internal.get("/kpis", tags=["kpis"])
async def kpis(ledger: LedgerDep, knowledge: KnowledgeDep,
               from_: Annotated[str, Query(alias="from", pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                                           description="First day, YYYY-MM-DD")],
               to: Annotated[str, Query(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                                        description="The day after the last, YYYY-MM-DD")],
               channel: Dimension = None, category: Dimension = None,
               priority: Dimension = None, level: Dimension = None, group: Dimension = None,
               agent: Dimension = None, department: Dimension = None,
               customer_type: Dimension = None) -> dict[str, Any]:
    """Volume and backlog, times to first response and resolution (median, p90),
    first-contact resolution, escalations (manual, automatic, per level), reopenings,
    SLA compliance (per target, priority and level), satisfaction, agents, groups,
    departments, top categories and knowledge's recurring problems; each headline figure
    against the previous period of the same length."""
    since, until = period(from_, to)
    filters = {"channel": channel, "category": category, "priority": priority, "level": level,
               "group": group, "agent": agent, "department": department,
               "customer_type": customer_type}
    try:
        answer = await ledger.kpis(since, until, filters)
    except InvalidPeriod as exc:
        raise ApiError(422, "invalid", str(exc), field=exc.field) from exc
    answer["recurring_problems"] = {"top_categories": answer["top_categories"],
                                    "knowledge": await knowledge.recurring()}
    return answer


@internal.get("/tickets/{ticket_id}/facts", tags=["facts"])
async def ticket_facts(ticket_id: Annotated[str, Path(min_length=1, max_length=200)],
                       ledger: LedgerDep) -> dict[str, Any]:
    found = await ledger.store.facts_of(ticket_id)
    if found is None:
        raise ApiError(404, "not_found", f"no facts for ticket {ticket_id}")
    found["ticket_id"] = found.pop("_id")
    return found


@internal.get("/reports/monthly", tags=["reports"], response_model=None, responses={200: {
    "description": "The report as a page, a spreadsheet or data, as `format` asks",
    "content": {"text/html": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}}}}})
async def monthly(ledger: LedgerDep, knowledge: KnowledgeDep, month: Month,
                  format: Annotated[str, Query(pattern=r"^(html|csv|json)$")] = "html",
                  lang: Annotated[str, Query(pattern=r"^(it|en)$")] = "en",
                  ) -> dict[str, Any] | Response:
    """The monthly improvement report: one self-contained, printable page (``html``), or the
    same numbers as ``csv`` or ``json``; in Italian or English."""
    try:
        report = await monthly_report(ledger, knowledge, month, lang)
    except InvalidPeriod as exc:
        raise ApiError(422, "invalid", str(exc), field=exc.field) from exc
    if format == "json":
        return report
    if format == "csv":
        return Response(to_csv(report), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="sportello-{month}.csv"'})
    return HTMLResponse(to_html(report), headers=SECURITY_HEADERS)


@internal.post("/reports/monthly/{month}/send", tags=["reports"])
async def send_monthly(month: Annotated[str, Path(pattern=r"^[0-9]{4}-[0-9]{2}$")],
                       mailer: MailerDep) -> dict[str, Any]:
    """Mail the month's report to the coordinators now (it also goes by itself once the
    month is over)."""
    try:
        return await mailer.send(month)
    except ReportNotSendable as exc:
        raise ApiError(409, "not_configured", str(exc)) from exc
    except InvalidPeriod as exc:
        raise ApiError(422, "invalid", str(exc), field="month") from exc
