"""The gateway's MongoDB: users, sessions, API keys, the audit log, the desk's queue lines,
the events it received (for webhook replays), webhook subscriptions and deliveries, and
notices to admins. Filters are built here from typed values only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from sportello_contracts.enums import SupportLevel
from sportello_gateway.domain.access import Role, Scope
from sportello_gateway.domain.accounts import ApiKey, User
from sportello_gateway.domain.desk import SORT_KEYS, LineUpdate, QueueQuery
from sportello_gateway.domain.portal import PortalSession, SignInLink
from sportello_runtime.batching import Batcher
from sportello_runtime.concurrency import ConcurrencyConflict
from sportello_runtime.store import Document, MongoStore, duplicates_in

USERS = "users"
SESSIONS = "sessions"
API_KEYS = "api_keys"
AUDIT = "audit"
DESK = "desk"
EVENTS = "events"
WEBHOOKS = "webhooks"
DELIVERIES = "deliveries"
NOTICES = "notices"
PORTAL_LINKS = "portal_links"
PORTAL_SESSIONS = "portal_sessions"
PORTAL_QUOTAS = "portal_quotas"
LineWrite = tuple[Document, Document, bool]
"""A queue line's filter, its change, and whether it may create the line."""


def indexes(event_retention: timedelta) -> dict[str, list[IndexModel]]:
    return {
        SESSIONS: [IndexModel([("username", ASCENDING)]),
                   IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0)],
        AUDIT: [IndexModel([("at", DESCENDING), ("_id", DESCENDING)]),
                IndexModel([("actor", ASCENDING), ("at", DESCENDING)]),
                IndexModel([("ticket", ASCENDING), ("at", DESCENDING)])],
        DESK: [IndexModel([("number", ASCENDING)]),
               IndexModel([("group_id", ASCENDING), ("status", ASCENDING)]),
               IndexModel([("agent_id", ASCENDING), ("status", ASCENDING)]),
               IndexModel([("priority", ASCENDING), ("created_at", ASCENDING)]),
               IndexModel([("due_at", ASCENDING)])],
        EVENTS: [IndexModel([("occurred_at", ASCENDING)]),
                 IndexModel([("received_at", ASCENDING)],
                            expireAfterSeconds=int(event_retention.total_seconds()))],
        DELIVERIES: [IndexModel([("status", ASCENDING), ("next_at", ASCENDING)]),
                     IndexModel([("webhook_id", ASCENDING), ("created_at", DESCENDING)])],
        PORTAL_LINKS: [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=3600)],
        PORTAL_SESSIONS: [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0)],
        PORTAL_QUOTAS: [IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0)],
    }


class GatewayStore:
    def __init__(self, store: MongoStore) -> None:
        self._users = store.collection(USERS)
        self._sessions = store.collection(SESSIONS)
        self._keys = store.collection(API_KEYS)
        self._audit = store.collection(AUDIT)
        self._desk = store.collection(DESK)
        self._events = store.collection(EVENTS)
        self._webhooks = store.collection(WEBHOOKS)
        self._deliveries = store.collection(DELIVERIES)
        self._notices = store.collection(NOTICES)
        self._line_writes: Batcher[str, LineWrite, bool] = Batcher(self._write_lines)

    # -- users ---------------------------------------------------------------------------

    async def has_users(self) -> bool:
        return await self._users.find_one({}, {"_id": 1}) is not None

    async def user(self, username: str) -> User | None:
        doc = await self._users.find_one({"_id": username})
        return user_from(doc) if doc else None

    async def users(self) -> list[User]:
        return [user_from(d) async for d in self._users.find({}).sort("_id", ASCENDING)]

    async def add_user(self, user: User) -> bool:
        try:
            await self._users.insert_one(user_document(user))
        except DuplicateKeyError:
            return False
        return True

    async def replace_user(self, user: User, *, expected_version: int) -> None:
        doc = user_document(user)
        doc["version"] = expected_version + 1
        result = await self._users.replace_one({"_id": user.username,
                                                "version": expected_version}, doc)
        if result.matched_count == 0:
            raise ConcurrencyConflict(f"user {user.username}")

    async def delete_user(self, username: str) -> bool:
        return (await self._users.delete_one({"_id": username})).deleted_count == 1

    async def record_login_failure(self, username: str, failures: int,
                                   locked_until: datetime | None) -> None:
        await self._users.update_one({"_id": username}, {"$set": {
            "failed_logins": failures, "locked_until": locked_until}})

    async def record_login(self, username: str) -> None:
        await self._users.update_one({"_id": username}, {"$set": {
            "failed_logins": 0, "locked_until": None}})

    # -- sessions (one per login; its refresh token rotates) ------------------------------

    async def add_session(self, session_id: str, username: str, secret_digest: str, *,
                          via: str, now: datetime, expires_at: datetime, ip: str | None) -> None:
        await self._sessions.insert_one({
            "_id": session_id, "username": username, "secret": secret_digest,
            "previous": None, "via": via, "created_at": now, "rotated_at": now,
            "expires_at": expires_at, "revoked_at": None, "ip": ip})

    async def session(self, session_id: str) -> Document | None:
        return await self._sessions.find_one({"_id": session_id})

    async def rotate_session(self, session_id: str, old_digest: str, new_digest: str, *,
                             now: datetime, expires_at: datetime) -> bool:
        """Swap the refresh secret, only from the one presented: two uses of one token race
        here and one of them loses."""
        found = await self._sessions.find_one_and_update(
            {"_id": session_id, "secret": old_digest, "revoked_at": None},
            {"$set": {"secret": new_digest, "previous": old_digest, "rotated_at": now,
                      "expires_at": expires_at}},
            return_document=ReturnDocument.AFTER)
        return found is not None

    async def revoke_session(self, session_id: str, now: datetime) -> None:
        await self._sessions.update_one({"_id": session_id, "revoked_at": None},
                                        {"$set": {"revoked_at": now}})

    async def revoke_sessions_of(self, username: str, now: datetime) -> None:
        await self._sessions.update_many({"username": username, "revoked_at": None},
                                         {"$set": {"revoked_at": now}})

    # -- API keys -------------------------------------------------------------------------

    async def add_api_key(self, key: ApiKey) -> None:
        await self._keys.insert_one(api_key_document(key))

    async def api_key(self, key_id: str) -> ApiKey | None:
        doc = await self._keys.find_one({"_id": key_id})
        return api_key_from(doc) if doc else None

    async def api_keys(self) -> list[ApiKey]:
        return [api_key_from(d) async for d in self._keys.find({}).sort("created_at", ASCENDING)]

    async def revoke_api_key(self, key_id: str, now: datetime) -> bool:
        result = await self._keys.update_one({"_id": key_id, "revoked_at": None},
                                             {"$set": {"revoked_at": now}})
        return result.matched_count == 1

    async def key_used(self, key_id: str, now: datetime) -> None:
        await self._keys.update_one({"_id": key_id}, {"$set": {"last_used_at": now}})

    # -- audit log: insert and read only ---------------------------------------------------

    async def audit(self, entry: Document) -> None:
        await self._audit.insert_one(entry)

    async def audit_entries(self, *, actor: str | None, action: str | None,
                            ticket: str | None, since: datetime | None,
                            until: datetime | None, before: tuple[datetime, str] | None,
                            limit: int) -> list[Document]:
        parts: list[Document] = []
        if actor is not None:
            parts.append({"actor": actor})
        if action is not None:
            parts.append({"action": action})
        if ticket is not None:
            parts.append({"ticket": ticket})
        if since is not None:
            parts.append({"at": {"$gte": since}})
        if until is not None:
            parts.append({"at": {"$lt": until}})
        if before is not None:
            at, entry_id = before
            parts.append({"$or": [{"at": {"$lt": at}}, {"at": at, "_id": {"$lt": entry_id}}]})
        query: Document = {"$and": parts} if parts else {}
        cursor = self._audit.find(query).sort([("at", DESCENDING), ("_id", DESCENDING)])
        return [d async for d in cursor.limit(limit)]

    # -- the desk's queue lines -----------------------------------------------------------

    async def apply(self, update: LineUpdate, at: datetime) -> bool:
        """Write one event's change; False when a newer event already wrote that part."""
        query: Document = {"_id": update.ticket_id}
        if update.newer_than is not None:
            name, value = update.newer_than
            query["$or"] = [{name: {"$lt": value}}, {name: None}]
        change: Document = {"$setOnInsert": {"created_at": at, **update.on_insert}}
        if update.set:
            change["$set"] = update.set
            for name in update.set:
                change["$setOnInsert"].pop(name, None)
        if await self._line_writes.submit(DESK, (query, change, True)):
            # Either the line holds a newer value (this event is stale), or another event
            # of the same new ticket inserted the line a moment before: write again into
            # the line that now exists, still fenced.
            if not update.set:
                return False
            result = await self._desk.update_one(query, {"$set": update.set})
            if result.matched_count == 0:
                return False
        for name, value in update.set_if_missing.items():
            # After the write above: the line exists now.
            await self._line_writes.submit(
                DESK, ({"_id": update.ticket_id, name: None}, {"$set": {name: value}}, False))
        return True

    async def _write_lines(self, _: str, writes: list[LineWrite]) -> list[bool]:
        """Line writes that arrive while one is on its way go together in one unordered
        write: a ticket's first events reach the desk within milliseconds of each other,
        and every ticket's. Per write, whether its upsert was refused as a duplicate."""
        try:
            await self._desk.bulk_write([UpdateOne(query, change, upsert=upsert)
                                         for query, change, upsert in writes], ordered=False)
        except BulkWriteError as exc:
            refused = duplicates_in(exc)
            return [index in refused for index in range(len(writes))]
        return [False] * len(writes)

    async def line(self, ticket_id: str) -> Document | None:
        return await self._desk.find_one({"_id": ticket_id})

    async def line_by_number(self, number: str) -> Document | None:
        return await self._desk.find_one({"number": number})

    async def queue(self, query: QueueQuery, where: Document) -> list[Document]:
        keys = SORT_KEYS[query.sort]
        cursor = self._desk.find(where).sort(list(keys)).limit(query.limit + 1)
        return [d async for d in cursor]

    # -- events received, for replays --------------------------------------------------------

    async def remember_event(self, event_id: str, event_type: str, occurred_at: datetime,
                             body: str, now: datetime) -> bool:
        try:
            await self._events.insert_one({"_id": event_id, "type": event_type,
                                           "occurred_at": occurred_at, "body": body,
                                           "received_at": now})
        except DuplicateKeyError:
            return False
        return True

    async def events_since(self, since: datetime, until: datetime | None,
                           limit: int) -> list[Document]:
        when: Document = {"$gte": since}
        if until is not None:
            when["$lt"] = until
        cursor = self._events.find({"occurred_at": when}).sort("occurred_at", ASCENDING)
        return [d async for d in cursor.limit(limit)]

    # -- webhooks ----------------------------------------------------------------------------

    async def add_webhook(self, doc: Document) -> None:
        await self._webhooks.insert_one(doc)

    async def webhook(self, webhook_id: str) -> Document | None:
        return await self._webhooks.find_one({"_id": webhook_id})

    async def webhooks(self) -> list[Document]:
        return [d async for d in self._webhooks.find({}).sort("created_at", ASCENDING)]

    async def update_webhook(self, webhook_id: str, fields: Document) -> Document | None:
        return await self._webhooks.find_one_and_update(
            {"_id": webhook_id}, {"$set": fields}, return_document=ReturnDocument.AFTER)

    async def delete_webhook(self, webhook_id: str) -> bool:
        return (await self._webhooks.delete_one({"_id": webhook_id})).deleted_count == 1

    async def webhook_failed(self, webhook_id: str) -> int:
        """One more failure in a row; the count after it."""
        doc = await self._webhooks.find_one_and_update(
            {"_id": webhook_id}, {"$inc": {"failures_in_a_row": 1}},
            return_document=ReturnDocument.AFTER)
        return int(doc["failures_in_a_row"]) if doc else 0

    async def webhook_succeeded(self, webhook_id: str) -> None:
        await self._webhooks.update_one({"_id": webhook_id, "failures_in_a_row": {"$gt": 0}},
                                        {"$set": {"failures_in_a_row": 0}})

    async def add_deliveries(self, docs: Sequence[Document]) -> int:
        added = 0
        for doc in docs:
            try:
                await self._deliveries.insert_one(doc)
                added += 1
            except DuplicateKeyError:
                pass  # a redelivered event: its deliveries exist already
        return added

    async def claim_delivery(self, now: datetime, lease: timedelta) -> Document | None:
        """The next delivery due, held by this replica for ``lease``."""
        return await self._deliveries.find_one_and_update(
            {"status": "pending", "next_at": {"$lte": now}},
            {"$set": {"next_at": now + lease}},
            sort=[("next_at", ASCENDING)], return_document=ReturnDocument.AFTER)

    async def finish_delivery(self, delivery_id: str, fields: Document) -> None:
        await self._deliveries.update_one({"_id": delivery_id}, {"$set": fields})

    async def deliveries(self, webhook_id: str, limit: int) -> list[Document]:
        cursor = self._deliveries.find({"webhook_id": webhook_id}, {"body": 0})
        return [d async for d in cursor.sort("created_at", DESCENDING).limit(limit)]

    # -- notices to admins --------------------------------------------------------------------

    async def add_notice(self, doc: Document) -> None:
        await self._notices.insert_one(doc)

    async def notices(self, limit: int) -> list[Document]:
        cursor = self._notices.find({}).sort("at", DESCENDING).limit(limit)
        return [d async for d in cursor]


class PortalStore:
    """The requester portal's sign-in links, sessions and link quotas. Secrets are kept as
    digests: the ``_id`` of a link or a session is the digest of what the requester holds."""

    def __init__(self, store: MongoStore) -> None:
        self._links = store.collection(PORTAL_LINKS)
        self._sessions = store.collection(PORTAL_SESSIONS)
        self._quotas = store.collection(PORTAL_QUOTAS)

    async def add_link(self, link_digest: str, link: SignInLink) -> None:
        await self._links.insert_one({
            "_id": link_digest, "email": link.email, "language": link.language,
            "issued_at": link.issued_at, "expires_at": link.expires_at, "used_at": None})

    async def use_link(self, link_digest: str, now: datetime) -> SignInLink | None:
        """The link as it was before this use, marking it used in the same step (two
        clicks at once: one of them signs in); a used one comes back with ``used_at``."""
        doc = await self._links.find_one_and_update(
            {"_id": link_digest, "used_at": None}, {"$set": {"used_at": now}},
            return_document=ReturnDocument.BEFORE)
        if doc is None:
            doc = await self._links.find_one({"_id": link_digest})
        if doc is None:
            return None
        return SignInLink(email=doc["email"], language=doc["language"],
                          issued_at=doc["issued_at"], expires_at=doc["expires_at"],
                          used_at=doc.get("used_at"))

    async def count(self, key: str, window: datetime, expires_at: datetime) -> int:
        """One more request in ``key``'s window; how many there have been, this one too."""
        doc = await self._quotas.find_one_and_update(
            {"_id": f"{key}|{window.isoformat()}"},
            {"$inc": {"count": 1}, "$setOnInsert": {"expires_at": expires_at}},
            upsert=True, return_document=ReturnDocument.AFTER)
        return int(doc["count"]) if doc else 1

    async def counted(self, key: str, window: datetime) -> int:
        """How many requests ``key``'s window had (0 when none, or long gone)."""
        doc = await self._quotas.find_one({"_id": f"{key}|{window.isoformat()}"})
        return int(doc["count"]) if doc else 0

    async def add_session(self, session_digest: str, session: PortalSession) -> None:
        await self._sessions.insert_one({
            "_id": session_digest, "email": session.email, "csrf": session.csrf,
            "language": session.language, "expires_at": session.expires_at})

    async def session(self, session_digest: str) -> PortalSession | None:
        doc = await self._sessions.find_one({"_id": session_digest})
        if doc is None:
            return None
        return PortalSession(email=doc["email"], csrf=doc["csrf"], language=doc["language"],
                             expires_at=doc["expires_at"])

    async def set_session_language(self, session_digest: str, language: str) -> None:
        await self._sessions.update_one({"_id": session_digest},
                                        {"$set": {"language": language}})

    async def end_session(self, session_digest: str) -> None:
        await self._sessions.delete_one({"_id": session_digest})


# --- documents <-> records -------------------------------------------------------------------


def user_document(u: User) -> Document:
    return {"_id": u.username, "role": u.role.value, "name": u.name,
            "password_hash": u.password_hash, "level": u.level.value if u.level else None,
            "groups": list(u.groups), "email": u.email, "disabled": u.disabled,
            "failed_logins": u.failed_logins, "locked_until": u.locked_until,
            "language": u.language, "version": u.version}


def user_from(d: Document) -> User:
    return User(username=d["_id"], role=Role(d["role"]), name=d["name"],
                password_hash=d.get("password_hash"),
                level=SupportLevel(d["level"]) if d.get("level") else None,
                groups=tuple(d.get("groups", ())), email=d.get("email"),
                disabled=bool(d.get("disabled")), failed_logins=int(d.get("failed_logins", 0)),
                locked_until=d.get("locked_until"), language=d.get("language", "en"),
                version=int(d.get("version", 1)))


def api_key_document(k: ApiKey) -> Document:
    return {"_id": k.id, "name": k.name, "role": k.role.value,
            "scopes": [s.value for s in k.scopes], "groups": list(k.groups),
            "created_by": k.created_by, "created_at": k.created_at,
            "secret": k.secret_digest, "revoked_at": k.revoked_at,
            "last_used_at": k.last_used_at}


def api_key_from(d: Document) -> ApiKey:
    return ApiKey(id=d["_id"], name=d["name"], role=Role(d["role"]),
                  scopes=tuple(Scope(s) for s in d["scopes"]), groups=tuple(d["groups"]),
                  created_by=d["created_by"], created_at=d["created_at"],
                  secret_digest=d["secret"], revoked_at=d.get("revoked_at"),
                  last_used_at=d.get("last_used_at"))
