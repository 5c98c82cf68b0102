"""mongomock behind MongoDB's wire protocol.

OP_MSG, every command a current driver sends, is read and answered here;
mockupdb parses the legacy OP_QUERY a driver may open its handshake with. Every
request is answered by ``MongoEmulator.execute``, which runs the command on
one shared ``mongomock.MongoClient``. The sockets are served by one selector
thread rather than by mockupdb's own server (a thread per connection, all
queuing on one lock: under load the threads spent 98% of their time handing
that lock around). One thread also means commands run one at a time, which
gives single-document atomicity like a real server.

Anything mongomock does not implement, and any option that would change a
command's meaning that we do not carry over, is answered with an error
(``ok: 0`` with a code), never with a guess.
"""

from __future__ import annotations

import gc
import itertools
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
import mongomock
from bson import json_util
from bson.int64 import Int64
from mockupdb import CODEC_OPTIONS, OP_MSG, OP_MSG_FLAGS, OPCODES
from mongomock import filtering, helpers
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

from sportello_mongo_emulator import speedups

log = logging.getLogger(__name__)

Db = Any
"""A mongomock database (mongomock's own annotations are partial)."""

MAX_WIRE_VERSION = 21  # MongoDB 7.0
DEFAULT_BATCH = 101
MAX_BATCH = 5_000

# Server error codes (src/mongo/base/error_codes.yml).
BAD_VALUE = 2
NAMESPACE_NOT_FOUND = 26
CURSOR_NOT_FOUND = 43
NAMESPACE_EXISTS = 48
COMMAND_NOT_FOUND = 59
ILLEGAL_OPERATION = 20
NOT_IMPLEMENTED = 238
DUPLICATE_KEY = 11000

IGNORED_FIELDS = {
    "$db", "lsid", "$clusterTime", "$readPreference", "readConcern", "writeConcern",
    "apiVersion", "apiStrict", "apiDeprecationErrors", "comment", "maxTimeMS",
    "bypassDocumentValidation", "$client", "noCursorTimeout",
}
"""Fields that do not change a command's result on a single standalone server."""


class CommandError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Unsupported(CommandError):
    def __init__(self, what: str) -> None:
        super().__init__(NOT_IMPLEMENTED, f"mongo emulator: {what} is not supported")


SETTLE_HEAP_EVERY_S = 5.0

TOP_KINDS = {"find": "queries", "getMore": "getmore", "insert": "insert", "update": "update",
             "delete": "remove"}
"""How ``top`` files a command; any other command on a collection is one of its "commands"."""
MORE_TO_COME = OP_MSG_FLAGS["moreToCome"]
CHECKSUM_PRESENT = OP_MSG_FLAGS["checksumPresent"]
KNOWN_OP_MSG_FLAGS = sum(OP_MSG_FLAGS.values())
_reply_ids = itertools.count(1)


def _op_msg_command(body: bytes) -> tuple[dict[str, Any], bool]:
    """The command an OP_MSG carries (its document sequences under their names, as the
    server reads them), and whether the client wants no reply (moreToCome)."""
    (flags,) = struct.unpack_from("<I", body, 0)
    if flags & ~KNOWN_OP_MSG_FLAGS:
        raise ValueError(f"OP_MSG flags has reserved bits set: 0x{flags:x}")
    end = len(body) - 4 if flags & CHECKSUM_PRESENT else len(body)
    command: dict[str, Any] = {}
    position = 4
    while position < end:
        kind = body[position]
        (size,) = struct.unpack_from("<i", body, position + 1)
        if kind == 0:
            command.update(bson.decode(body[position + 1:position + 1 + size], CODEC_OPTIONS))
        elif kind == 1:
            named_end = body.index(b"\0", position + 5)
            name = body[position + 5:named_end].decode()
            command[name] = bson.decode_all(body[named_end + 1:position + 1 + size],
                                            CODEC_OPTIONS)
        else:
            raise ValueError(f"OP_MSG section kind {kind} is not known")
        position += 1 + size
    return command, bool(flags & MORE_TO_COME)


def _op_msg_reply(reply: dict[str, Any], request_id: int) -> bytes:
    payload = b"\0\0\0\0\0" + bson.encode(reply)  # no flags; one body section (kind 0)
    header = struct.pack("<iiii", 16 + len(payload), next(_reply_ids) & 0x7FFFFFFF,
                         request_id, OP_MSG)
    return header + payload


SYSTEM_DATABASES = frozenset({"admin", "config", "local"})


def save(mongo: Any, path: Path) -> None:
    """Every database, collection, index and document to ``path`` (Extended JSON, so
    dates, binaries and ids come back as they were), written to a new file and then
    moved over the old one: a crash mid-write leaves the previous snapshot."""
    databases: dict[str, Any] = {}
    for db_name in mongo.list_database_names():
        if db_name in SYSTEM_DATABASES:
            continue
        db = mongo[db_name]
        collections = {}
        for name in db.list_collection_names():
            collection = db[name]
            indexes = [{"keys": list(info["key"]),
                        "options": {k: v for k, v in info.items()
                                    if k in ("unique", "sparse", "expireAfterSeconds")}}
                       | {"name": index_name}
                       for index_name, info in collection.index_information().items()
                       if index_name != "_id_"]
            collections[name] = {"indexes": indexes, "documents": list(collection.find({}))}
        databases[db_name] = collections
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json_util.dumps(databases, json_options=json_util.CANONICAL_JSON_OPTIONS))
    tmp.replace(path)
    log.info("snapshot written to %s (%d databases)", path, len(databases))


def restore(mongo: Any, path: Path) -> None:
    databases = json_util.loads(path.read_text())
    for db_name, collections in databases.items():
        for name, content in collections.items():
            collection = mongo[db_name][name]
            for index in content["indexes"]:
                collection.create_index([tuple(k) for k in index["keys"]], name=index["name"],
                                        **index["options"])
            if content["documents"]:
                collection.insert_many(content["documents"])
    log.info("snapshot %s loaded (%d databases)", path, len(databases))


def _settle_heap() -> None:
    """The stored documents live as long as the emulator, and Python's full garbage
    collection walked all of them again and again (200-360 ms pauses with a few thousand
    tickets, every client waiting, nothing ever collected). Collect the young garbage, then
    freeze what survived out of the collector's sight; plain reference counting still frees
    every document that is deleted or replaced."""
    gc.collect(1)
    gc.freeze()


class MongoEmulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 27017, *,
                 snapshot: Path | None = None, snapshot_every_s: float = 30.0) -> None:
        speedups.apply()
        self._mongo: Any = mongomock.MongoClient()
        self._snapshot = snapshot
        self._snapshot_every_s = snapshot_every_s
        if snapshot is not None and snapshot.exists():
            restore(self._mongo, snapshot)
        self._cursors: dict[int, tuple[str, Iterator[Any]]] = {}
        self._cursor_ids = itertools.count(1_000_001)
        self._connections = itertools.count(1)
        self._address = (host, port)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started = time.monotonic()
        self._counts: dict[str, list[int]] = {}
        """Command name as clients send it -> [total, failed], as in serverStatus."""
        self._top: dict[str, dict[str, list[int]]] = {}
        """Namespace -> what ran on it (``TOP_KINDS``) -> [microseconds, count], as ``top``."""
        self._commands: dict[str, Callable[[Db, dict[str, Any]], dict[str, Any]]]
        self._commands = {
            "serverstatus": self._server_status,
            "top": self._top_report,
            "hello": self._hello,
            "ismaster": self._hello,
            "ping": self._ok,
            "buildinfo": self._build_info,
            "endsessions": self._ok,
            "find": self._find,
            "getmore": self._get_more,
            "killcursors": self._kill_cursors,
            "insert": self._insert,
            "update": self._update,
            "delete": self._delete,
            "findandmodify": self._find_and_modify,
            "aggregate": self._aggregate,
            "count": self._count,
            "distinct": self._distinct,
            "createindexes": self._create_indexes,
            "listindexes": self._list_indexes,
            "dropindexes": self._drop_indexes,
            "drop": self._drop,
            "dropdatabase": self._drop_database,
            "listcollections": self._list_collections,
            "listdatabases": self._list_databases,
            "create": self._create,
        }

    # -- server ---------------------------------------------------------------

    def start(self) -> int:
        """Listen and serve in a background thread; returns the bound port."""
        listener = socket.create_server(self._address, reuse_port=False)
        listener.setblocking(False)
        self._listener = listener
        self._address = listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._serve, name="mongo-emulator", daemon=True)
        self._thread.start()
        return int(self._address[1])

    def stop(self) -> None:
        """Stop serving; with a snapshot file, everything is written to it last."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._snapshot is not None:
            save(self._mongo, self._snapshot)

    @property
    def uri(self) -> str:
        host, port = self._address
        return f"mongodb://{host}:{port}"

    def _serve(self) -> None:
        assert self._listener is not None
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ, None)
        buffers: dict[socket.socket, bytearray] = {}
        settled_at = saved_at = time.monotonic()
        try:
            while not self._stopping.is_set():
                if time.monotonic() - settled_at > SETTLE_HEAP_EVERY_S:
                    _settle_heap()
                    settled_at = time.monotonic()
                if (self._snapshot is not None
                        and time.monotonic() - saved_at > self._snapshot_every_s):
                    # Here, between two commands: mongomock is not safe across threads.
                    save(self._mongo, self._snapshot)
                    saved_at = time.monotonic()
                for key, _ in selector.select(timeout=0.2):
                    if key.data is None:
                        client, _ = self._listener.accept()
                        client.setblocking(True)  # replies are written with sendall
                        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        buffers[client] = bytearray()
                        selector.register(client, selectors.EVENT_READ, "client")
                        continue
                    client = key.fileobj  # type: ignore[assignment]
                    if not self._read(client, buffers[client]):
                        selector.unregister(client)
                        buffers.pop(client, None)
                        client.close()
        finally:
            for client in buffers:
                client.close()
            self._listener.close()
            selector.close()

    def _read(self, client: socket.socket, buffer: bytearray) -> bool:
        """Take what arrived, answer every complete message; False once the client is gone."""
        try:
            data = client.recv(1 << 20)
        except OSError:
            return False
        if not data:
            return False
        buffer += data
        while len(buffer) >= 16:
            (length,) = struct.unpack_from("<i", buffer, 0)
            if len(buffer) < length:
                break
            (request_id, _, opcode) = struct.unpack_from("<iii", buffer, 4)
            body = bytes(buffer[16:length])
            del buffer[:length]
            try:
                if opcode == OP_MSG:
                    reply = self._answer_op_msg(body)
                    if reply is not None:
                        client.sendall(_op_msg_reply(reply, request_id))
                    continue
                parse = OPCODES.get(opcode)
                if parse is None:
                    log.error("unknown opcode %s: closing the connection", opcode)
                    return False
                request = parse.unpack(body, client, None, request_id)
                database = request.namespace or "admin"
                request.replies(self._answer(database, dict(request.doc)))
            except OSError:
                return False
            except Exception:
                log.exception("could not answer a request; closing the connection")
                return False
        return True

    def _answer_op_msg(self, body: bytes) -> dict[str, Any] | None:
        """An OP_MSG read here rather than through mockupdb's request objects (a quarter of
        the emulator's time went to building and replying through them); ``None`` for an
        unacknowledged write, whose client expects no reply."""
        command, more_to_come = _op_msg_command(body)
        reply = self._answer(command.pop("$db", None) or "admin", command)
        return None if more_to_come else reply

    def _answer(self, database: str, command: dict[str, Any]) -> dict[str, Any]:
        if database.endswith(".$cmd"):
            database = database[: -len(".$cmd")]
        try:
            reply = self.execute(database, command)
        except CommandError as exc:
            return {"ok": 0.0, "errmsg": str(exc), "code": exc.code}
        except DuplicateKeyError as exc:
            return {"ok": 0.0, "errmsg": str(exc), "code": DUPLICATE_KEY}
        except OperationFailure as exc:
            return {"ok": 0.0, "errmsg": str(exc), "code": exc.code or BAD_VALUE}
        except NotImplementedError as exc:
            return {"ok": 0.0, "errmsg": f"mongo emulator (mongomock): {exc}",
                    "code": NOT_IMPLEMENTED}
        except Exception as exc:
            log.exception("command failed: %r", command)
            return {"ok": 0.0, "errmsg": f"mongo emulator: {type(exc).__name__}: {exc}",
                    "code": BAD_VALUE}
        reply.setdefault("ok", 1)
        return reply

    def execute(self, database: str, command: dict[str, Any]) -> dict[str, Any]:
        """Run one command document; the reply document (errors raise)."""
        if not command:
            raise CommandError(BAD_VALUE, "empty command")
        in_transaction = "txnNumber" in command and command.get("autocommit") is False
        if command.get("startTransaction") or in_transaction:
            raise Unsupported("multi-document transactions")
        name = next(iter(command))
        handler = self._commands.get(name.lower())
        if handler is None:
            raise CommandError(COMMAND_NOT_FOUND, f"mongo emulator: no such command: '{name}'")
        counts = self._counts.get(name)
        if counts is None:
            counts = self._counts[name] = [0, 0]
        counts[0] += 1
        started = time.perf_counter()
        try:
            return handler(self._mongo[database], command)
        except Exception:
            counts[1] += 1
            raise
        finally:
            collection = command.get("collection" if name == "getMore" else name)
            if isinstance(collection, str):
                self._note_top(f"{database}.{collection}", TOP_KINDS.get(name, "commands"),
                               time.perf_counter() - started)

    def _note_top(self, namespace: str, kind: str, seconds: float) -> None:
        kinds = self._top.setdefault(namespace, {})
        for counted in (kind, "total"):
            spent = kinds.setdefault(counted, [0, 0])
            spent[0] += round(seconds * 1_000_000)
            spent[1] += 1

    # -- admin ------------------------------------------------------------------

    def _hello(self, _: Db, __: dict[str, Any]) -> dict[str, Any]:
        return {
            "ismaster": True,
            "isWritablePrimary": True,
            "helloOk": True,
            "maxBsonObjectSize": 16 * 1024 * 1024,
            "maxMessageSizeBytes": 48_000_000,
            "maxWriteBatchSize": 100_000,
            "localTime": datetime.now(UTC),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": next(self._connections),
            "minWireVersion": 0,
            "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False,
            "ok": 1.0,
        }

    def _ok(self, _: Db, __: dict[str, Any]) -> dict[str, Any]:
        return {"ok": 1.0}

    def _server_status(self, _: Db, __: dict[str, Any]) -> dict[str, Any]:
        """The part of MongoDB's serverStatus a benchmark reads: commands run, by name."""
        return {
            "host": f"{self._address[0]}:{self._address[1]}",
            "version": "7.0.0-mongomock",
            "process": "sportello_mongo_emulator",
            "uptime": time.monotonic() - self._started,
            "localTime": datetime.now(UTC),
            "metrics": {"commands": {name: {"total": total, "failed": failed}
                                     for name, (total, failed) in self._counts.items()}},
            "ok": 1.0,
        }

    def _top_report(self, _: Db, __: dict[str, Any]) -> dict[str, Any]:
        """MongoDB's ``top``: per namespace, the time and count of what ran on it (counted
        per command, a round trip, as ``serverStatus`` counts them here)."""
        totals: dict[str, Any] = {"note": "all times in microseconds"}
        for namespace, kinds in self._top.items():
            totals[namespace] = {kind: {"time": spent, "count": count}
                                 for kind, (spent, count) in kinds.items()}
        return {"totals": totals, "ok": 1.0}

    def _build_info(self, _: Db, __: dict[str, Any]) -> dict[str, Any]:
        return {"version": "7.0.0-mongomock", "versionArray": [7, 0, 0, 0], "ok": 1.0}

    # -- cursors ----------------------------------------------------------------

    def _cursor_reply(
        self, namespace: str, docs: Iterable[Any], batch_size: int | None,
        single_batch: bool = False,
    ) -> dict[str, Any]:
        size = DEFAULT_BATCH if batch_size is None or batch_size <= 0 else batch_size
        first, rest = _batch(docs, size)
        cursor_id = 0
        if rest is not None and not single_batch:
            cursor_id = next(self._cursor_ids)
            self._cursors[cursor_id] = (namespace, rest)
        return {"cursor": {"id": Int64(cursor_id), "ns": namespace, "firstBatch": first}, "ok": 1.0}

    def _get_more(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        cursor_id = int(command["getMore"])
        if cursor_id not in self._cursors:
            raise CommandError(CURSOR_NOT_FOUND, f"cursor id {cursor_id} not found")
        namespace, docs = self._cursors.pop(cursor_id)
        batch, rest = _batch(docs, int(command.get("batchSize") or MAX_BATCH))
        next_id = 0
        if rest is not None:
            next_id = cursor_id
            self._cursors[cursor_id] = (namespace, rest)
        return {"cursor": {"id": Int64(next_id), "ns": namespace, "nextBatch": batch}, "ok": 1.0}

    def _kill_cursors(self, _: Db, command: dict[str, Any]) -> dict[str, Any]:
        killed: list[Any] = []
        missing: list[Any] = []
        for cursor_id in command.get("cursors", []):
            (killed if self._cursors.pop(int(cursor_id), None) else missing).append(cursor_id)
        return {"cursorsKilled": killed, "cursorsNotFound": missing, "cursorsAlive": [],
                "cursorsUnknown": [], "ok": 1.0}

    # -- reads ------------------------------------------------------------------

    def _find(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        _refuse_options(command, "find", {"collation", "min", "max", "returnKey", "showRecordId",
                                          "tailable", "awaitData", "allowPartialResults", "let"})
        name = command["find"]
        limit = int(command.get("limit") or 0)
        skip = int(command.get("skip") or 0)
        cursor = db[name].find(
            command.get("filter") or {},
            command.get("projection") or None,
            skip=skip,
            limit=abs(limit),
            sort=_sort_spec(command.get("sort")),
        )
        docs = _taken(cursor, skip, abs(limit)) if limit else _as_taken(cursor)
        return self._cursor_reply(
            f"{db.name}.{name}", docs, command.get("batchSize"),
            single_batch=bool(command.get("singleBatch")) or limit < 0,
        )

    def _aggregate(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        _refuse_options(command, "aggregate", {"collation", "explain", "let"})
        name = command["aggregate"]
        if not isinstance(name, str):
            raise Unsupported("database-level aggregate")
        pipeline = command.get("pipeline") or []
        for stage in pipeline:
            if set(stage) & {"$out", "$merge", "$changeStream", "$search", "$vectorSearch"}:
                raise Unsupported(f"aggregation stage {next(iter(stage))}")
        counted = _count_pipeline(db[name], pipeline)
        docs = counted if counted is not None else list(db[name].aggregate(pipeline))
        batch = (command.get("cursor") or {}).get("batchSize")
        return self._cursor_reply(f"{db.name}.{name}", docs, batch)

    def _count(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        _refuse_options(command, "count", {"collation"})
        kwargs: dict[str, Any] = {}
        if command.get("skip"):
            kwargs["skip"] = int(command["skip"])
        if command.get("limit"):
            kwargs["limit"] = abs(int(command["limit"]))
        n = db[command["count"]].count_documents(command.get("query") or {}, **kwargs)
        return {"n": n, "ok": 1.0}

    def _distinct(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        _refuse_options(command, "distinct", {"collation"})
        values = db[command["distinct"]].distinct(command["key"], command.get("query") or None)
        return {"values": values, "ok": 1.0}

    # -- writes -----------------------------------------------------------------

    def _insert(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        collection = _existing(db, command["insert"])
        ordered = command.get("ordered", True)
        inserted, errors = 0, []
        for index, document in enumerate(command.get("documents", [])):
            try:
                collection.insert_one(document)
                inserted += 1
            except (DuplicateKeyError, OperationFailure) as exc:
                errors.append(_write_error(index, exc))
                if ordered:
                    break
        return _write_reply(inserted, errors)

    def _update(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        collection = _existing(db, command["update"])
        ordered = command.get("ordered", True)
        matched, modified, upserted, errors = 0, 0, [], []
        for index, spec in enumerate(command.get("updates", [])):
            _refuse_options(spec, "update", {"collation", "hint", "sort"})
            query, update = spec.get("q") or {}, spec.get("u")
            upsert, multi = bool(spec.get("upsert")), bool(spec.get("multi"))
            try:
                if isinstance(update, list):
                    raise Unsupported("pipeline-style updates")
                if not isinstance(update, dict):
                    raise CommandError(BAD_VALUE, "update must be a document")
                if _is_replacement(update):
                    if multi:
                        raise CommandError(BAD_VALUE, "multi update needs update operators")
                    result = collection.replace_one(query, update, upsert=upsert)
                else:
                    kwargs: dict[str, Any] = {"upsert": upsert}
                    if spec.get("arrayFilters"):
                        kwargs["array_filters"] = spec["arrayFilters"]
                    method = collection.update_many if multi else collection.update_one
                    result = method(query, update, **kwargs)
            except (DuplicateKeyError, OperationFailure, CommandError, NotImplementedError) as exc:
                errors.append(_write_error(index, exc))
                if ordered:
                    break
                continue
            matched += result.matched_count
            modified += result.modified_count
            if result.upserted_id is not None:
                upserted.append({"index": index, "_id": result.upserted_id})
        reply = _write_reply(matched + len(upserted), errors)
        reply["nModified"] = modified
        if upserted:
            reply["upserted"] = upserted
        return reply

    def _delete(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        collection = db[command["delete"]]
        ordered = command.get("ordered", True)
        deleted, errors = 0, []
        for index, spec in enumerate(command.get("deletes", [])):
            _refuse_options(spec, "delete", {"collation", "hint"})
            try:
                if int(spec.get("limit", 0)) == 1:
                    deleted += collection.delete_one(spec.get("q") or {}).deleted_count
                else:
                    deleted += collection.delete_many(spec.get("q") or {}).deleted_count
            except OperationFailure as exc:
                errors.append(_write_error(index, exc))
                if ordered:
                    break
        return _write_reply(deleted, errors)

    def _find_and_modify(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        _refuse_options(command, "findAndModify", {"collation", "hint", "let"})
        name = str(command.get("findAndModify") or command.get("findandmodify"))
        collection = _existing(db, name)
        query = command.get("query") or {}
        sort = _sort_spec(command.get("sort"))
        fields = command.get("fields") or None
        existing = collection.find_one(query, {"_id": 1}, sort=sort)
        # mongomock finds the document again from the query, then updates it by its id:
        # once found here, it is found by its id (the filter is evaluated once, as the
        # server does).
        target = query if existing is None else {"_id": existing["_id"]}
        if command.get("remove"):
            value = collection.find_one_and_delete(target, projection=fields, sort=sort)
            return {"lastErrorObject": {"n": int(value is not None)}, "value": value, "ok": 1.0}
        update = command.get("update")
        if isinstance(update, list):
            raise Unsupported("pipeline-style updates")
        if not isinstance(update, dict):
            raise CommandError(BAD_VALUE, "either an update or remove=true must be specified")
        upsert = bool(command.get("upsert"))
        return_document = ReturnDocument.AFTER if command.get("new") else ReturnDocument.BEFORE
        kwargs: dict[str, Any] = {}
        if command.get("arrayFilters"):
            kwargs["array_filters"] = command["arrayFilters"]
        if _is_replacement(update):
            method = collection.find_one_and_replace
        else:
            method = collection.find_one_and_update
        value = method(target, update, projection=fields, sort=sort, upsert=upsert,
                       return_document=return_document, **kwargs)
        last_error: dict[str, Any] = {"n": 1 if existing is not None or upsert else 0,
                                      "updatedExisting": existing is not None}
        if existing is None and upsert:
            created = collection.find_one(query, {"_id": 1}, sort=sort)
            if created is not None:
                last_error["upserted"] = created["_id"]
        return {"lastErrorObject": last_error, "value": value, "ok": 1.0}

    # -- indexes and namespaces ---------------------------------------------------

    def _create_indexes(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        name = command["createIndexes"]
        existed = name in db.list_collection_names()
        collection = db[name]
        before = len(collection.index_information()) if existed else 1
        for spec in command.get("indexes", []):
            unknown = set(spec) - {"key", "name", "unique", "sparse", "expireAfterSeconds",
                                   "partialFilterExpression", "background", "v"}
            if unknown:
                raise Unsupported(f"index options {sorted(unknown)}")
            keys = list(spec["key"].items())
            for field, direction in keys:
                if direction not in (1, -1):
                    raise Unsupported(f"{direction!r} indexes (field {field})")
            kwargs: dict[str, Any] = {"name": spec.get("name"), "unique": bool(spec.get("unique")),
                                      "sparse": bool(spec.get("sparse"))}
            if "expireAfterSeconds" in spec:
                kwargs["expireAfterSeconds"] = spec["expireAfterSeconds"]
            if "partialFilterExpression" in spec:
                kwargs["partialFilterExpression"] = spec["partialFilterExpression"]
            collection.create_index(keys, **kwargs)
        after = len(collection.index_information())
        return {"createdCollectionAutomatically": not existed, "numIndexesBefore": before,
                "numIndexesAfter": after, "ok": 1.0}

    def _list_indexes(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        name = command["listIndexes"]
        if not speedups.collection_created(db, name):
            raise CommandError(NAMESPACE_NOT_FOUND, f"ns does not exist: {db.name}.{name}")
        specs = []
        for index_name, info in db[name].index_information().items():
            spec = {k: v for k, v in info.items() if k != "key"}
            spec["key"] = dict(info["key"])
            spec["name"] = index_name
            specs.append(spec)
        return self._cursor_reply(f"{db.name}.{name}", specs, None)

    def _drop_indexes(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        name, which = command["dropIndexes"], command.get("index", "*")
        if which == "*":
            db[name].drop_indexes()
        else:
            db[name].drop_index(which)
        return {"ok": 1.0}

    def _drop(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        db.drop_collection(command["drop"])
        return {"ns": f"{db.name}.{command['drop']}", "ok": 1.0}

    def _drop_database(self, db: Db, _: dict[str, Any]) -> dict[str, Any]:
        self._mongo.drop_database(db.name)
        return {"dropped": db.name, "ok": 1.0}

    def _create(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        _refuse_options(command, "create", {"capped", "timeseries", "validator", "viewOn",
                                            "clusteredIndex", "collation"})
        name = command["create"]
        if name in db.list_collection_names():
            raise CommandError(NAMESPACE_EXISTS, f"Collection {db.name}.{name} already exists.")
        db.create_collection(name)
        return {"ok": 1.0}

    def _list_collections(self, db: Db, command: dict[str, Any]) -> dict[str, Any]:
        query = command.get("filter") or {}
        infos = [
            {"name": name, "type": "collection", "options": {}, "info": {"readOnly": False}}
            for name in sorted(db.list_collection_names())
        ]
        if command.get("nameOnly"):
            infos = [{"name": i["name"], "type": i["type"]} for i in infos]
        matching = [info for info in infos if filtering.filter_applies(query, info)]  # type: ignore[no-untyped-call]
        return self._cursor_reply(f"{db.name}.$cmd.listCollections", matching, None)

    def _list_databases(self, _: Db, command: dict[str, Any]) -> dict[str, Any]:
        names = sorted(self._mongo.list_database_names())
        if command.get("nameOnly"):
            return {"databases": [{"name": n} for n in names], "ok": 1.0}
        return {"databases": [{"name": n, "sizeOnDisk": 0, "empty": False} for n in names],
                "totalSize": 0, "ok": 1.0}


def _as_taken(cursor: Any) -> Iterator[Any]:
    """Every match, copied batch by batch as the client asks for it: mongomock's cursor
    copied all of them before the first batch went out (100,000 articles took longer than
    the driver waits). The documents matched are the ones stored when the find came
    (mongomock lists them first), as a real cursor would see them."""
    taken = cursor._factory()
    if cursor.collection.codec_options.tz_aware:
        return (_timezone_aware(d) for d in taken)
    return iter(taken)


def _batch(docs: Iterable[Any], size: int) -> tuple[list[Any], Iterator[Any] | None]:
    """The next ``size`` documents, and what is left (None when nothing is)."""
    rest = iter(docs)
    batch = list(itertools.islice(rest, size))
    following = next(rest, _END)
    if following is _END:
        return batch, None
    return batch, itertools.chain([following], rest)


_END = object()


def _taken(cursor: Any, skip: int, limit: int) -> list[Any]:
    """What mongomock's cursor returns for ``skip`` and ``limit``, without copying the
    documents they drop. Its cursor copies every match before it skips and limits (a
    find for the 50 most urgent of 30,000 queued tickets copied all 30,000); its
    dataset sorts the stored documents and copies each one only as it is taken."""
    taken = itertools.islice(cursor._factory(), skip, skip + limit)
    if cursor.collection.codec_options.tz_aware:
        return [_timezone_aware(d) for d in taken]
    return list(taken)


_timezone_aware: Callable[[Any], Any] = helpers.make_datetime_timezone_aware_in_document


def _count_pipeline(collection: Any, pipeline: list[Any]) -> list[dict[str, Any]] | None:
    """The driver's ``count_documents`` pipeline ($match [$skip] [$limit] $group n: $sum 1),
    counted without copying documents (mongomock's aggregate copies the whole collection).
    None for any other pipeline."""
    if len(pipeline) < 2 or set(pipeline[0]) != {"$match"}:
        return None
    group = pipeline[-1]
    if group != {"$group": {"_id": 1, "n": {"$sum": 1}}}:
        return None
    skip, limit = 0, None
    for stage in pipeline[1:-1]:
        if set(stage) == {"$skip"}:
            skip = int(stage["$skip"])
        elif set(stage) == {"$limit"}:
            limit = int(stage["$limit"])
        else:
            return None
    total = sum(1 for _ in collection._iter_documents(pipeline[0]["$match"]))
    total = max(0, total - skip)
    if limit is not None:
        total = min(total, limit)
    return [{"_id": 1, "n": total}] if total else []


def _existing(db: Db, name: str) -> Any:
    """A write creates the collection, which then outlives its documents (as in MongoDB;
    mongomock alone forgets a collection once it is empty)."""
    if not speedups.collection_created(db, name):
        db.create_collection(name)
    return db[name]


def _refuse_options(command: dict[str, Any], what: str, refused: set[str]) -> None:
    if refused.isdisjoint(command):
        return  # the usual case, asked on every command: no option of the kind named
    present = sorted(k for k in refused if command.get(k) not in (None, False, {}, []))
    if present:
        raise Unsupported(f"{what} with {', '.join(present)}")


def _sort_spec(sort: Any) -> list[tuple[str, int]] | None:
    if not sort:
        return None
    spec = []
    for field, direction in dict(sort).items():
        if not isinstance(direction, int) or direction not in (1, -1):
            raise Unsupported(f"sort by {direction!r} on {field}")
        spec.append((field, direction))
    return spec


def _is_replacement(update: dict[str, Any]) -> bool:
    return bool(update) and not any(key.startswith("$") for key in update)


def _write_error(index: int, exc: Exception) -> dict[str, Any]:
    if isinstance(exc, DuplicateKeyError):
        code = DUPLICATE_KEY
    elif isinstance(exc, CommandError):
        code = exc.code
    elif isinstance(exc, OperationFailure):
        code = exc.code or BAD_VALUE
    else:
        code = NOT_IMPLEMENTED
    return {"index": index, "code": code, "errmsg": str(exc)}


def _write_reply(n: int, errors: list[dict[str, Any]]) -> dict[str, Any]:
    reply: dict[str, Any] = {"n": n, "ok": 1.0}
    if errors:
        reply["writeErrors"] = errors
    return reply
