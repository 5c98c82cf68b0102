"""The gateway's rules without I/O: access, accounts, queue lines and views, cursors,
versions, webhooks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import Depends, FastAPI

from sportello_contracts import new_event
from sportello_contracts.enums import Priority, SupportLevel, TicketStatus
from sportello_contracts.events import TicketAssigned, TicketStatusChanged
from sportello_gateway.api.deps import guard
from sportello_gateway.domain import access, accounts, desk, webhooks
from sportello_gateway.domain.access import Permission, Principal, Role, Scope
from sportello_gateway.domain.desk import QueueQuery, Sort, View
from sportello_runtime.ratelimit import RateLimiter

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def agent(*groups: str) -> Principal:
    return Principal("anna", Role.AGENT, level=SupportLevel.L1, groups=frozenset(groups))


# --- access ----------------------------------------------------------------------------


def test_roles_have_the_permissions_design_md_gives_them() -> None:
    sre = Principal("sam", Role.SRE)
    coordinator = Principal("carla", Role.COORDINATOR)
    assert access.may(agent("service-desk"), Permission.TICKETS_WORK, writes=True)
    assert not access.may(agent("service-desk"), Permission.TICKETS_ASSIGN, writes=True)
    assert access.may(coordinator, Permission.TICKETS_PRIORITY, writes=True)
    assert not access.may(coordinator, Permission.ADMIN, writes=False)
    assert access.may(sre, Permission.OPS_READ, writes=False)
    assert not access.may(sre, Permission.TICKETS_READ, writes=False)


def test_a_read_only_key_reads_but_never_changes() -> None:
    key = Principal("key:1", Role.COORDINATOR, via="api_key", scopes=frozenset({Scope.READ}))
    assert access.may(key, Permission.TICKETS_READ, writes=False)
    assert not access.may(key, Permission.TICKETS_WORK, writes=True)


def test_agents_and_vendors_see_only_their_groups_tickets_sres_none() -> None:
    assert access.sees_ticket(agent("service-desk"), ("service-desk", None))
    assert access.sees_ticket(agent("service-desk"), ("l3-experts", "service-desk"))  # owner
    assert not access.sees_ticket(agent("service-desk"), ("l2-network", None))
    assert not access.sees_ticket(agent("service-desk"), ())
    assert access.sees_ticket(Principal("c", Role.COORDINATOR), ())
    assert not access.sees_ticket(Principal("s", Role.SRE), ("service-desk",))


async def test_a_route_without_a_rule_is_refused_to_everyone() -> None:
    app = FastAPI()

    @app.get("/api/brand-new", dependencies=[Depends(guard)])
    async def brand_new() -> dict[str, str]:
        return {"leaked": "yes"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway") as client:
        response = await client.get("/api/brand-new")
    assert response.status_code == 403
    assert access.rule_of("GET", "/api/brand-new") is None


def test_the_rate_limiter_refills_over_time() -> None:
    limiter = RateLimiter(per_minute=60, burst=2)
    assert limiter.take("anna", 0.0) is None
    assert limiter.take("anna", 0.0) is None
    wait = limiter.take("anna", 0.0)
    assert wait is not None
    assert 0.9 < wait <= 1.0
    assert limiter.take("bruno", 0.0) is None  # per caller
    assert limiter.take("anna", 1.0) is None


# --- accounts -----------------------------------------------------------------------------


def test_profiles_follow_the_role() -> None:
    with pytest.raises(accounts.AccountError, match="L1, L2 or L3"):
        accounts.check_profile(Role.AGENT, SupportLevel.L4, ("x",))
    with pytest.raises(accounts.AccountError, match="vendor group"):
        accounts.check_profile(Role.VENDOR, None, ())
    with pytest.raises(accounts.AccountError, match="no level or groups"):
        accounts.check_profile(Role.SRE, None, ("service-desk",))
    accounts.check_profile(Role.AGENT, SupportLevel.L2, ("l2-network",))


def test_passwords_must_be_long_and_not_the_username() -> None:
    with pytest.raises(accounts.AccountError, match="at least 10"):
        accounts.check_password("short", username="anna", min_length=10)
    with pytest.raises(accounts.AccountError, match="username"):
        accounts.check_password("anna-2026-password", username="anna", min_length=10)
    with pytest.raises(accounts.AccountError, match="different"):
        accounts.check_password("aaaaaaaaaaaa", username="x", min_length=10)


def test_failures_lock_at_the_threshold_and_the_count_starts_again() -> None:
    user = accounts.User("anna", Role.AGENT, "Anna", "hash", failed_logins=3)
    failures, until = accounts.after_failure(user, NOW, threshold=5,
                                             lockout=timedelta(minutes=15))
    assert (failures, until) == (4, None)
    failures, until = accounts.after_failure(
        accounts.User("anna", Role.AGENT, "Anna", "hash", failed_logins=4), NOW,
        threshold=5, lockout=timedelta(minutes=15))
    assert failures == 0
    assert until == NOW + timedelta(minutes=15)
    locked = accounts.User("anna", Role.AGENT, "Anna", "hash", locked_until=until)
    assert accounts.is_locked(locked, NOW)
    assert not accounts.is_locked(locked, NOW + timedelta(minutes=16))


def test_secrets_handed_out_carry_their_record_and_are_kept_as_digests() -> None:
    token, stored = accounts.new_refresh_token("a" * 32)
    session_id, secret = accounts.read_refresh_token(token) or ("", "")
    assert session_id == "a" * 32
    assert accounts.same_digest(secret, stored)
    assert secret not in stored
    key_id, shown, _digest = accounts.new_api_key()
    assert accounts.read_api_key(shown) == (key_id, shown.split("_", 2)[2])
    assert accounts.read_refresh_token("rt_../../etc.passwd") is None
    assert accounts.read_api_key(shown + "x") is None
    with pytest.raises(accounts.AccountError, match="admin"):
        accounts.check_api_key(Role.ADMIN, ())


# --- the desk's lines --------------------------------------------------------------------


def status_changed(version: int, to: TicketStatus) -> desk.LineUpdate | None:
    return desk.line_update(new_event(
        TicketStatusChanged(ticket_id="t1", number="HD-2026-000001",
                            from_status=TicketStatus.NEW, to_status=to, version=version),
        producer="intake", correlation_id="t1"))


def test_each_event_writes_only_its_part_fenced_by_its_version() -> None:
    update = status_changed(3, TicketStatus.IN_PROGRESS)
    assert update is not None
    assert update.newer_than == ("status_version", 3)
    assert update.set["status"] == "in_progress"
    assigned = desk.line_update(new_event(
        TicketAssigned(ticket_id="t1", level=SupportLevel.L2, group_id="l2-network",
                       group_name="L2 Network", agent_id="bruno", sequence=4),
        producer="routing", correlation_id="t1"))
    assert assigned is not None
    assert assigned.newer_than == ("routing_sequence", 4)
    assert assigned.set["group_id"] == "l2-network"


def test_a_queue_shows_an_agent_only_its_groups_and_the_open_tickets() -> None:
    where = desk.queue_filter(QueueQuery(view=View.MINE, priority=Priority.P1), me="anna",
                              groups=frozenset({"service-desk"}), now=NOW)
    parts = where["$and"]
    assert {"$or": [{"group_id": {"$in": ["service-desk"]}},
                    {"owner_group_id": {"$in": ["service-desk"]}}]} in parts
    assert {"status": {"$nin": ["resolved", "closed"]}} in parts
    assert {"agent_id": "anna"} in parts
    assert {"priority": "P1"} in parts
    everything = desk.queue_filter(QueueQuery(view=View.ALL, sort=Sort.OLDEST), me="c",
                                   groups=None, now=NOW)
    assert everything == {}


def test_text_is_matched_literally() -> None:
    where = desk.queue_filter(QueueQuery(view=View.ALL, text='.*{"$gt": ""}', sort=Sort.OLDEST),
                              me="c", groups=None, now=NOW)
    subject = where["$or"][0]["subject"]["$regex"]
    assert subject == r'\.\*\{"\$gt":\ ""\}'


def test_cursors_round_trip_and_refuse_what_is_not_ours() -> None:
    line = {"_id": "t9", "priority": "P2", "created_at": NOW}
    cursor = desk.encode_cursor(Sort.PRIORITY, line)
    assert desk.decode_cursor(Sort.PRIORITY, cursor) == ("P2", NOW, "t9")
    with pytest.raises(desk.BadCursor, match="another sort"):
        desk.decode_cursor(Sort.NEWEST, cursor)
    forged = desk.encode_cursor(Sort.OLDEST, {"_id": "t", "created_at": NOW}).replace("x", "y")
    with pytest.raises(desk.BadCursor):
        desk.decode_cursor(Sort.PRIORITY, forged)
    import base64
    import json
    evil = base64.urlsafe_b64encode(json.dumps(
        {"s": "created", "v": [{"$gt": ""}, "t"]}).encode()).decode()
    with pytest.raises(desk.BadCursor, match="not ours"):
        desk.decode_cursor(Sort.OLDEST, evil)


def test_paging_continues_after_the_last_line_in_sort_order() -> None:
    after = desk.after_cursor((("priority", 1), ("created_at", 1), ("_id", 1)),
                              ("P2", NOW, "t9"))
    assert after == {"$or": [{"priority": {"$gt": "P2"}},
                             {"priority": "P2", "created_at": {"$gt": NOW}},
                             {"priority": "P2", "created_at": NOW, "_id": {"$gt": "t9"}}]}


def test_etags_name_both_records_and_only_ours_are_read() -> None:
    assert desk.etag(7, 3) == '"7.3"'
    assert desk.read_etag('"7.3"') == (7, 3)
    assert desk.read_etag('W/"7.3"') == (7, 3)
    assert desk.read_etag("*") is None
    assert desk.read_etag('"7"') is None


# --- webhooks -------------------------------------------------------------------------------


def test_signatures_verify_only_with_the_secret_and_while_fresh() -> None:
    header = webhooks.sign("s3cret-s3cret-s3cret", 1_000, b'{"a":1}')
    assert webhooks.verify("s3cret-s3cret-s3cret", header, b'{"a":1}', now=1_100)
    assert not webhooks.verify("s3cret-s3cret-s3cret", header, b'{"a":2}', now=1_100)
    assert not webhooks.verify("other", header, b'{"a":1}', now=1_100)
    assert not webhooks.verify("s3cret-s3cret-s3cret", header, b'{"a":1}', now=2_000)
    assert not webhooks.verify("s3cret-s3cret-s3cret", "garbage", b"{}", now=1_000)


def test_retries_back_off_and_private_addresses_need_an_allowance() -> None:
    waits = [webhooks.next_try_in(n, base_s=2, max_s=60).total_seconds() for n in range(1, 7)]
    assert waits == [2, 4, 8, 16, 32, 60]
    assert webhooks.allowed_address("93.184.216.34", [])
    for inside in ("127.0.0.1", "10.0.0.5", "192.168.1.1", "169.254.169.254", "::1",
                   "::ffff:10.0.0.1", "fd00::1"):
        assert not webhooks.allowed_address(inside, []), inside
    assert webhooks.allowed_address("127.0.0.1", ["127.0.0.0/8"])
    assert webhooks.takes(["ticket.*"], "ticket.created")
    assert not webhooks.takes(["ticket.created"], "ticket.closed")
