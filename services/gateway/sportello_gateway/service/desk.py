"""What operators do with tickets: queues, the workspace in one call, and commands that
never overwrite a change they did not see."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sportello_contracts import EventEnvelope, utc_now
from sportello_gateway.backends import Backends, Refused, Unavailable
from sportello_gateway.domain import desk as rules
from sportello_gateway.domain.access import Principal, sees_ticket, visible_groups
from sportello_gateway.domain.desk import QueueQuery
from sportello_gateway.service.accounts import Audit
from sportello_gateway.service.metrics import GatewayMetrics
from sportello_gateway.store import GatewayStore


class NotVisible(Exception):
    """No such ticket, or not one this person may see: the same answer for both."""


class NoPrecondition(Exception):
    """A command without If-Match (428)."""


class BadPrecondition(Exception):
    """An If-Match that is not one of our ETags (400)."""


class Stale(Exception):
    """412: the ticket or its assignment changed since the version the command was based on."""

    def __init__(self, current_etag: str) -> None:
        super().__init__(f"the ticket changed; it is now at {current_etag}")
        self.etag = current_etag


class PartsUnavailable(Exception):
    """503: a command needs a service that is down."""

    def __init__(self, parts: dict[str, str]) -> None:
        super().__init__(", ".join(f"{k}: {v}" for k, v in parts.items()))
        self.parts = parts


@dataclass(frozen=True)
class Current:
    """A ticket's record and assignment, read together before and after a command."""

    ticket: dict[str, Any]
    assignment: dict[str, Any] | None

    @property
    def ticket_id(self) -> str:
        return str(self.ticket["id"])

    @property
    def etag(self) -> str:
        return rules.etag(int(self.ticket["version"]),
                          int(self.assignment["version"]) if self.assignment else None)

    @property
    def groups(self) -> tuple[str | None, ...]:
        a = self.assignment or {}
        return (a.get("group_id") or self.ticket.get("group_id"), a.get("owner_group_id"))

    def summary(self) -> dict[str, Any]:
        """What the audit log keeps as before and after."""
        a = self.assignment or {}
        return {"status": self.ticket.get("status"), "version": self.ticket.get("version"),
                "level": a.get("level"), "group_id": a.get("group_id"),
                "agent_id": a.get("agent_id"), "priority": a.get("priority"),
                "assignment_version": a.get("version")}


Command = Callable[[Current], Awaitable[None]]


class SharedReads:
    """Identical queue reads at the same moment share one database read, and its answer
    for ``max_age_s``: the agents of one group open the same queue, and at the start of a
    shift they all do it at once. Queues change live through the stream anyway."""

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self._answers: dict[str, tuple[float, asyncio.Future[list[dict[str, Any]]]]] = {}

    def forget(self) -> None:
        """The desk changed: the next reads go to the database."""
        self._answers.clear()

    async def read(self, key: str,
                   read: Callable[[], Awaitable[list[dict[str, Any]]]]) -> list[dict[str, Any]]:
        now = time.monotonic()
        found = self._answers.get(key)
        if found is not None and (not found[1].done() or now - found[0] <= self.max_age_s):
            return await asyncio.shield(found[1])
        if len(self._answers) > 1_000:
            self._answers = {k: v for k, v in self._answers.items()
                             if now - v[0] <= self.max_age_s}
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._answers[key] = (now, future)
        try:
            future.set_result(await read())
        except BaseException as exc:
            self._answers.pop(key, None)
            future.set_exception(exc)
            future.exception()  # retrieved: the callers who shared it get it raised
            raise
        return future.result()


class Desk:
    def __init__(self, store: GatewayStore, backends: Backends, audit: Audit,
                 metrics: GatewayMetrics, *, queue_max_age_s: float = 0.5) -> None:
        self.store = store
        self.backends = backends
        self.audit = audit
        self.metrics = metrics
        self._queues = SharedReads(queue_max_age_s)

    # -- queues --------------------------------------------------------------------------

    async def queue(self, principal: Principal, query: QueueQuery
                    ) -> tuple[list[dict[str, Any]], str | None]:
        where = rules.queue_filter(query, me=principal.subject,
                                   groups=visible_groups(principal), now=utc_now())
        key = repr((sorted(where.items()), query.sort.value, query.limit))
        lines = await self._queues.read(key, lambda: self.store.queue(query, where))
        more = len(lines) > query.limit
        lines = lines[:query.limit]
        cursor = rules.encode_cursor(query.sort, lines[-1]) if more and lines else None
        return lines, cursor

    async def project(self, envelope: EventEnvelope, *, tell_consoles: bool = True) -> None:
        """Fold an event into the ticket's queue line. Before consoles are told of it, the
        shared queue answers are dropped so that their next read sees the change."""
        update = rules.line_update(envelope)
        if update is not None:
            await self.store.apply(update, envelope.occurred_at)
            if tell_consoles:
                self._queues.forget()

    # -- the workspace -------------------------------------------------------------------

    async def workspace(self, principal: Principal, number: str) -> dict[str, Any]:
        """Ticket, assignment, clocks and suggestions, read at once, each within the time
        budget; a part whose service is down is marked unavailable, never an error."""
        line = await self.store.line_by_number(number)
        ticket_id = line["_id"] if line else None
        parts: dict[str, Any] = {}
        unavailable: dict[str, str] = {}

        async def fetch(name: str, service: str, path: str) -> None:
            if not self.backends.has(service):
                parts[name] = None  # not deployed here: nothing to offer, nothing broken
                return
            started = time.perf_counter()
            try:
                parts[name] = await self.backends[service].call("GET", path)
            except Unavailable as exc:
                self.metrics.backend_unavailable.labels(service).inc()
                unavailable[name] = exc.reason
            except Refused as exc:
                if exc.status == 404:
                    parts[name] = None
                else:
                    unavailable[name] = f"{service} answered {exc.status}"
            finally:
                self.metrics.backend_calls.labels(service).observe(time.perf_counter() - started)

        def by_id(tid: str) -> list[Awaitable[None]]:
            return [fetch("assignment", "routing", f"/assignments/{tid}"),
                    fetch("sla", "sla", f"/tickets/{tid}/sla"),
                    fetch("suggestions", "knowledge", f"/tickets/{tid}/suggestions")]

        if ticket_id is not None:
            await asyncio.gather(fetch("ticket", "intake", f"/tickets/{number}"),
                                 *by_id(ticket_id))
        else:  # not in the queues yet (its events are on their way): intake knows its id
            await fetch("ticket", "intake", f"/tickets/{number}")
            if parts.get("ticket"):
                ticket_id = parts["ticket"]["id"]
                await asyncio.gather(*by_id(ticket_id))
        if "ticket" in parts and parts["ticket"] is None:
            raise NotVisible(number)
        if line is None and "ticket" not in parts:
            raise PartsUnavailable(unavailable)  # nothing says whose the ticket is
        # Whose it is: routing's assignment decides; without it (routing down, or not
        # routed yet) the queue line and intake's copy of the group.
        assignment = parts.get("assignment")
        groups: tuple[str | None, ...] = rules.groups_of(line)
        if assignment:
            groups = (assignment.get("group_id"), assignment.get("owner_group_id"))
        elif parts.get("ticket"):
            groups = (*groups, parts["ticket"].get("group_id"))
        if not sees_ticket(principal, groups):
            raise NotVisible(number)
        answer: dict[str, Any] = {}
        for name in ("ticket", "assignment", "sla", "suggestions"):
            if name in unavailable:
                answer[name] = {"unavailable": True, "reason": unavailable[name]}
            else:
                answer[name] = parts.get(name)
        answer["unavailable"] = sorted(unavailable)
        answer["line"] = line_view(line) if line else None
        ticket = parts.get("ticket")
        answer["etag"] = (rules.etag(int(ticket["version"]),
                                     int(assignment["version"]) if assignment else None)
                          if ticket and "assignment" not in unavailable else None)
        return answer

    async def current(self, principal: Principal, number: str) -> Current:
        """The two records a command may change, both needed (a command waits for neither
        a guess nor a stale copy), of a ticket this person may see."""
        current = await self.read(number)
        if not sees_ticket(principal, current.groups):
            raise NotVisible(number)
        return current

    async def read(self, number: str) -> Current:
        """The ticket's record and its assignment as they are now, whoever asks: after a
        command the person may no longer see the ticket (escalated away), and still gets
        its new state once."""
        try:
            ticket = await self.backends["intake"].call("GET", f"/tickets/{number}")
        except Unavailable as exc:
            raise PartsUnavailable({"ticket": exc.reason}) from exc
        except Refused as exc:
            if exc.status == 404:
                raise NotVisible(number) from exc
            raise
        try:
            assignment = await self.backends["routing"].call(
                "GET", f"/assignments/{ticket['id']}")
        except Unavailable as exc:
            raise PartsUnavailable({"assignment": exc.reason}) from exc
        except Refused as exc:
            if exc.status != 404:
                raise
            assignment = None
        return Current(ticket, assignment)

    # -- commands --------------------------------------------------------------------------

    async def command(self, principal: Principal, number: str, *, name: str,
                      if_match: str | None, ip: str | None, detail: dict[str, Any],
                      run: Command) -> Current:
        """Check the version the operator saw, run the command with that version (the owning
        service refuses it if the record moved in between), audit, and answer the new state."""
        if if_match is None:
            self.metrics.commands.labels(name, "no_precondition").inc()
            raise NoPrecondition(name)
        seen = rules.read_etag(if_match)
        if seen is None:
            raise BadPrecondition('If-Match must be the ETag the workspace gave, e.g. "3.2"')
        before = await self.current(principal, number)

        async def audit(outcome: str, note: object, after: Current | None = None) -> None:
            self.metrics.commands.labels(name, outcome).inc()
            await self.audit.record(actor=principal, action=f"ticket.{name}", ip=ip,
                                    object_type="ticket", object_id=before.ticket_id,
                                    ticket=number, before=before.summary(),
                                    after=after.summary() if after else None,
                                    outcome=outcome, detail=str(note)[:500])

        if rules.etag(*seen) != before.etag:
            await audit("stale", detail)
            raise Stale(before.etag)
        try:
            await run(before)
        except Refused as exc:
            stale = exc.status == 409 and exc.body.get("error") == "conflict"
            await audit("stale" if stale else "refused", exc.body.get("message", ""))
            if stale:
                raise Stale((await self.current(principal, number)).etag) from exc
            raise
        except Unavailable as exc:
            self.metrics.commands.labels(name, "unavailable").inc()
            raise PartsUnavailable({exc.service: exc.reason}) from exc
        after = await self.read(number)
        await audit("ok", detail, after)
        return after

    # Each command below is what ``run`` does, with the version it was based on.

    def take(self, principal: Principal) -> Command:
        return self.assign(principal, principal.subject, "taken")

    def assign(self, principal: Principal, agent_id: str, reason: str) -> Command:
        return self._move(principal, "assign", agent_id=agent_id, reason=reason)

    def _move(self, principal: Principal, move: str, **fields: str | None) -> Command:
        """A routing move on the ticket's assignment, fenced by the version it was read at."""
        async def run(c: Current) -> None:
            await self.backends["routing"].call(
                "POST", f"/assignments/{c.ticket_id}/{move}",
                json={**fields, "actor": principal.subject,
                      "expected_version": _version_of(c.assignment)})
        return run

    def message(self, principal: Principal, body: str, *, public: bool) -> Command:
        async def run(c: Current) -> None:
            await self.backends["intake"].call(
                "POST", f"/tickets/{c.ticket['number']}/messages",
                json={"author": "agent", "author_id": principal.subject,
                      "author_name": principal.name or principal.subject,
                      "visibility": "public" if public else "internal", "body": body,
                      "expected_version": c.ticket["version"]})
        return run

    def status(self, principal: Principal, status: str, reason: str | None,
               resolution: str | None) -> Command:
        async def run(c: Current) -> None:
            await self.backends["intake"].call(
                "POST", f"/tickets/{c.ticket['number']}/status",
                json={"status": status, "reason": reason, "resolution": resolution,
                      "actor": principal.subject, "expected_version": c.ticket["version"]})
        return run

    def escalate(self, principal: Principal, reason: str, to_group: str | None) -> Command:
        return self._move(principal, "escalate", reason=reason, to_group=to_group)

    def hand_back(self, principal: Principal, reason: str, to_group: str) -> Command:
        return self._move(principal, "hand-back", reason=reason, to_group=to_group)

    def priority(self, principal: Principal, priority: str, reason: str) -> Command:
        return self._move(principal, "priority", priority=priority, reason=reason)

    def recategorise(self, principal: Principal, category: str, reason: str) -> Command:
        return self._move(principal, "category", category=category, reason=reason)

    def call(self, principal: Principal, call: dict[str, Any]) -> Command:
        async def run(c: Current) -> None:
            await self.backends["intake"].call(
                "POST", "/calls",
                json={**call, "caller": c.ticket["requester"], "agent_id": principal.subject,
                      "ticket_number": c.ticket["number"]})
        return run

    def link_article(self, principal: Principal, article_id: str, title: str | None,
                     url: str | None) -> Command:
        """Recorded as an internal note, so the link stays in the ticket's own history."""
        text = f"Knowledge article linked: {article_id}"
        if title:
            text += f" — {title}"
        if url:
            text += f"\n{url}"
        return self.message(principal, text, public=False)


def _version_of(assignment: dict[str, Any] | None) -> int | None:
    return int(assignment["version"]) if assignment else None


def line_view(line: dict[str, Any]) -> dict[str, Any]:
    """A queue line as the API shows it: the ticket's id under its own name."""
    view = {k: v for k, v in line.items() if k != "_id"}
    view["ticket_id"] = line["_id"]
    return view
