"""Make mongomock's full scans cheap without changing what they return.

mongomock answers every filter, unique-index check and TTL pass by running
its general matcher over every document of the collection. The emulator
keeps mongomock's matcher as the only judge of what matches, and only
narrows the documents it is asked about:

- a top-level ``_id`` equality (or ``$in`` of plain values) looks the
  candidates up by key;
- top-level equalities on plain scalars drop documents whose field can
  neither equal the value nor contain it (a superset of the real matches is
  kept; mongomock's matcher then decides);
- every declared index is also a hash map from key to ``_id``s, so an
  equality on all of an index's fields, and each unique-index check, looks
  candidates up instead of scanning (documents whose key holds an array or
  an embedded document are always candidates); a compound index also maps
  each leading part of its key, so that an equality on its first fields
  (the sweeps' ``status``, a count's group and state) looks them up too;
- a single-field index also keeps its dates and its numbers sorted, so a
  range (``$lt``/``$lte``/``$gt``/``$gte``) on that field takes the values in
  range by bisection (null and missing never match a range, in MongoDB as in
  mongomock; arrays stay candidates);
- unique indexes compare key tuples directly instead of running a filter
  per document;
- TTL expiry runs at most once a second per collection (MongoDB's own TTL
  monitor runs every 60 seconds);
- mongomock deep-copies a document before every update (to roll back a unique
  violation) and for every document it returns. Stored documents hold only
  what BSON decodes to, so a copy that rebuilds dicts (mongomock keeps a
  stored document as an OrderedDict) and lists and shares
  the immutable values does the same job several times faster; any other
  type still goes through ``copy.deepcopy``. Its walk that turns datetimes
  into naive UTC milliseconds decides by exact type the same way.

- a collection is taken from mongomock's own map by name, rather than through
  ``with_options`` comparing every option on every command to return it; whether
  a write's collection exists is asked of that map too, instead of listing them all;
- an index whose fields an update left alone is not re-keyed;
- the version strings mongomock compares on every insert and update are parsed once.

The hash maps stay exact because every change to a document passes through
one of three places: the store's ``__setitem__`` (inserts, restores),
``__delitem__`` (deletes, TTL expiry), or ``Collection._update`` (in-place
updates, replacements, upserts), after which the matched documents are
re-keyed.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import functools
import time
import types
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import bson
from mongomock import collection as mm_collection
from mongomock import database as mm_database
from mongomock import helpers, store
from mongomock.filtering import filter_applies
from pymongo.errors import DuplicateKeyError

SCALARS = (str, int, float, bool, datetime)
_MISSING = object()
_applied = False


def _plain(value: Any) -> bool:
    return isinstance(value, SCALARS)


def _candidate_ids(spec: Mapping[str, Any]) -> list[Any] | None:
    if "_id" not in spec:
        return None
    wanted = spec["_id"]
    if _plain(wanted):
        return [wanted]
    if isinstance(wanted, Mapping) and set(wanted) == {"$in"}:
        values = wanted["$in"]
        if isinstance(values, list) and all(_plain(v) for v in values):
            return list(dict.fromkeys(values))
    return None


def _scalar_equalities(spec: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [
        (key, value) for key, value in spec.items()
        if not key.startswith("$") and "." not in key and key != "_id" and _plain(value)
    ]


def _may_match(document: Mapping[str, Any], equalities: list[tuple[str, Any]]) -> bool:
    for key, value in equalities:
        present = document.get(key, _MISSING)
        if present is _MISSING or isinstance(present, (list, dict)):
            continue  # arrays and embedded documents: leave it to mongomock
        if present != value:
            return False
    return True


class _HashIndex:
    """Key tuple -> ids for one declared index of one collection."""

    def __init__(self, fields: list[str]) -> None:
        self.fields = fields
        self.ids: dict[tuple[Any, ...], set[Any]] = {}
        self.key_of: dict[Any, tuple[Any, ...] | None] = {}
        self.unkeyable: set[Any] = set()  # documents whose key holds an array or a document
        # Single-field indexes: (value, id) kept sorted per family of comparable values.
        self.ordered: dict[str, list[tuple[Any, Any]]] = {"date": [], "number": []}
        # Compound indexes: ids by each leading part of the key, as MongoDB uses an index
        # for an equality on its first fields (a sweep's status, then a range on a date).
        self.by_prefix: dict[int, dict[tuple[Any, ...], set[Any]]] = {
            length: {} for length in range(1, len(fields))}

    def put(self, doc_id: Any, document: Mapping[str, Any]) -> None:
        key = _key_of(document, self.fields)
        kept = self.key_of.get(doc_id)
        if kept is not None and kept == key and all(
                type(a) is type(b) for a, b in zip(kept, key, strict=True)):
            return  # most updates leave an index's fields alone: nothing to move
        self.remove(doc_id)
        if any(isinstance(v, (list, dict)) for v in key):
            self.unkeyable.add(doc_id)
            self.key_of[doc_id] = None
            return
        try:
            self.ids.setdefault(key, set()).add(doc_id)
        except TypeError:  # an unhashable scalar we do not know: scan it every time
            self.unkeyable.add(doc_id)
            self.key_of[doc_id] = None
            return
        self.key_of[doc_id] = key
        for length, ids in self.by_prefix.items():
            ids.setdefault(key[:length], set()).add(doc_id)
        family = _family(key[0]) if len(key) == 1 else None
        if family is not None:
            try:
                bisect.insort(self.ordered[family], (key[0], doc_id))
            except TypeError:  # ids of mixed types cannot break ties: scan this one
                self.unkeyable.add(doc_id)

    def remove(self, doc_id: Any) -> None:
        if doc_id not in self.key_of:
            return
        key = self.key_of.pop(doc_id)
        self.unkeyable.discard(doc_id)
        if key is not None:
            for ids, part in [(self.ids, key), *((by, key[:length])
                                                 for length, by in self.by_prefix.items())]:
                bucket = ids.get(part)
                if bucket is not None:
                    bucket.discard(doc_id)
                    if not bucket:
                        del ids[part]
            family = _family(key[0]) if len(key) == 1 else None
            if family is not None:
                ordered = self.ordered[family]
                try:
                    at = bisect.bisect_left(ordered, (key[0], doc_id))
                except TypeError:
                    at = len(ordered)
                if at < len(ordered) and ordered[at] == (key[0], doc_id):
                    del ordered[at]
                else:  # not where bisection says (mixed id types): find it the slow way
                    with contextlib.suppress(ValueError):
                        ordered.remove((key[0], doc_id))

    def in_range(self, bounds: Mapping[str, Any]) -> set[Any] | None:
        """Ids whose value satisfies every bound, plus the unkeyable; None when it cannot tell."""
        families = {_family(v) for v in bounds.values()}
        if len(families) != 1 or None in families:
            return None
        ordered = self.ordered[families.pop()]  # type: ignore[index]
        lo, hi = 0, len(ordered)
        for op, value in bounds.items():
            if op == "$gt":
                lo = max(lo, _after(ordered, value))
            elif op == "$gte":
                lo = max(lo, _before(ordered, value))
            elif op == "$lt":
                hi = min(hi, _before(ordered, value))
            elif op == "$lte":
                hi = min(hi, _after(ordered, value))
            else:
                return None
        found = {doc_id for _, doc_id in ordered[lo:hi]} if lo < hi else set()
        return found | self.unkeyable

    def candidates(self, key: tuple[Any, ...]) -> set[Any]:
        """Ids whose key is ``key``, or starts with it (a leading part of a compound
        index's fields), plus the unkeyable."""
        ids = self.ids if len(key) == len(self.fields) else self.by_prefix[len(key)]
        try:
            found = ids.get(key, set())
        except TypeError:
            return set(self.key_of)
        return found | self.unkeyable

    def leading(self, fields: Mapping[str, Any]) -> int:
        """How many of the index's first fields ``fields`` holds."""
        held = 0
        for field in self.fields:
            if field not in fields:
                break
            held += 1
        return held


def _family(value: Any) -> str | None:
    if isinstance(value, datetime):
        return "date"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "number"
    return None


def _before(ordered: list[tuple[Any, Any]], value: Any) -> int:
    """Index of the first entry whose value is >= ``value``."""
    lo, hi = 0, len(ordered)
    while lo < hi:
        mid = (lo + hi) // 2
        if ordered[mid][0] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _after(ordered: list[tuple[Any, Any]], value: Any) -> int:
    """Index of the first entry whose value is > ``value``."""
    lo, hi = 0, len(ordered)
    while lo < hi:
        mid = (lo + hi) // 2
        if ordered[mid][0] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _range_bounds(spec: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    ranges = []
    for key, value in spec.items():
        if (not key.startswith("$") and "." not in key and isinstance(value, Mapping) and value
                and set(value) <= {"$lt", "$lte", "$gt", "$gte"}):
            ranges.append((key, dict(value)))
    return ranges


def _hash_indexes(collection_store: Any) -> dict[str, _HashIndex]:
    """The store's hash maps, (re)built when the declared indexes changed."""
    declared = {
        name: [field for field, _ in index["key"]]
        for name, index in collection_store.indexes.items()
        if name != "_id_"
    }
    cached = getattr(collection_store, "_sportello_indexes", None)
    if cached is not None and {n: i.fields for n, i in cached.items()} == declared:
        return cached
    built = {name: _HashIndex(fields) for name, fields in declared.items()}
    for doc_id, document in collection_store._documents.items():
        for index in built.values():
            index.put(doc_id, document)
    collection_store._sportello_indexes = built
    return built


def _reindex(collection_store: Any, doc_id: Any) -> None:
    indexes = getattr(collection_store, "_sportello_indexes", None)
    if not indexes:
        return
    document = collection_store._documents.get(doc_id)
    for index in indexes.values():
        if document is None:
            index.remove(doc_id)
        else:
            index.put(doc_id, document)


def _setitem(self: Any, key: Any, value: Any) -> None:
    _original_setitem(self, key, value)
    _reindex(self, key)


def _delitem(self: Any, key: Any) -> None:
    _original_delitem(self, key)
    _reindex(self, key)


def _drop(self: Any) -> None:
    _original_drop(self)
    self._sportello_indexes = None


def _update(self: Any, spec: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
    matched = [d["_id"] for d in _iter_documents(self, spec)] if isinstance(spec, Mapping) else []
    try:
        return _original_update(self, spec, document, *args, **kwargs)
    finally:
        for doc_id in matched:
            _reindex(self._store, doc_id)


def _iter_documents(self: Any, spec: Any) -> Iterator[Any]:
    if spec is None or not isinstance(spec, Mapping) or not spec:
        return _original_iter_documents(self, spec)
    documents = self._store._documents
    ids = _candidate_ids(spec)
    if ids is not None:
        candidates = [documents[i] for i in ids if i in documents]
    else:
        equalities = _scalar_equalities(spec)
        ranges = _range_bounds(spec)
        if not equalities and not ranges:
            return _original_iter_documents(self, spec)
        self._store._remove_expired_documents()
        indexes = _hash_indexes(self._store)
        by_field = dict(equalities)
        index = next(
            (ix for ix in indexes.values() if all(f in by_field for f in ix.fields)), None
        )
        ranged: set[Any] | None = None
        for field, bounds in ranges:
            single = next((ix for ix in indexes.values() if ix.fields == [field]), None)
            if single is not None:
                ranged = single.in_range(bounds)
                if ranged is not None:
                    break
        found: set[Any] | None = None
        if index is not None:
            found = index.candidates(tuple(by_field[f] for f in index.fields))
        elif equalities and indexes:
            held, best = max(((ix.leading(by_field), ix) for ix in indexes.values()),
                             key=lambda pair: pair[0])
            if held:
                found = best.candidates(tuple(by_field[f] for f in best.fields[:held]))
                if ranged is not None and len(ranged) < len(found):
                    found = ranged  # a date range is often narrower than a status
        if found is not None:
            candidates = [documents[i] for i in found if i in documents]
        elif ranged is not None:
            candidates = [documents[i] for i in ranged if i in documents]
        elif equalities:
            candidates = [d for d in _all(self._store) if _may_match(d, equalities)]
        else:
            return _original_iter_documents(self, spec)
    if not candidates:
        filter_applies(spec, {})  # still validate the filter, as mongomock does
    return (d for d in candidates if filter_applies(spec, d))


def _ensure_uniques(self: Any, new_data: Mapping[str, Any]) -> None:
    indexes = _hash_indexes(self._store)
    for name, declared in self._store.indexes.items():
        if not declared.get("unique") or name == "_id_":
            continue
        if declared.get("partialFilterExpression") is not None:
            _original_ensure_uniques(self, new_data)
            return
        fields = [key for key, _ in declared["key"]]
        wanted = _key_of(new_data, fields)
        if declared.get("sparse") and all(v is None for v in wanted):
            continue
        if any(isinstance(v, (list, dict)) for v in wanted):
            _original_ensure_uniques(self, new_data)  # multikey or embedded: mongomock's way
            return
        documents = self._store._documents
        for doc_id in indexes[name].candidates(wanted):
            if doc_id == new_data.get("_id") or doc_id not in documents:
                continue
            if _key_of(documents[doc_id], fields) == wanted:
                raise DuplicateKeyError("E11000 Duplicate Key Error", 11000)


def _all(collection_store: Any) -> list[Any]:
    """Every live document; the emulator runs one command at a time, so no lock is needed."""
    collection_store._remove_expired_documents()
    return list(collection_store._documents.values())


def _key_of(document: Mapping[str, Any], fields: list[str]) -> tuple[Any, ...]:
    key = []
    for field in fields:
        if "." not in field:
            key.append(document.get(field))
            continue
        try:
            key.append(helpers.get_value_by_dot(document, field))
        except KeyError:
            key.append(None)
    return tuple(key)


def collection_created(db: Any, name: str) -> bool:
    """``name in db.list_collection_names()`` without listing every collection, which
    every write asked (a twenty-fifth of the emulator's time)."""
    if name.startswith("system."):
        return name in db.list_collection_names()
    stored = db._store._collections.get(name)
    return stored is not None and bool(stored.is_created)


def _remove_expired_documents(self: Any) -> None:
    now = time.monotonic()
    if now - getattr(self, "_sportello_last_expiry", 0.0) < 1.0:
        return
    self._sportello_last_expiry = now
    _original_remove_expired(self)


_SHARED_AS_IS = frozenset({
    str, int, float, bool, type(None), bytes, datetime, uuid.UUID,
    bson.ObjectId, bson.Binary, bson.Int64, bson.Decimal128, bson.Timestamp,
})
"""Immutable types, returned as they are by ``copy.deepcopy`` too."""


def _copy_document(value: Any, memo: dict[int, Any] | None = None) -> Any:
    kind = type(value)
    if kind is dict:
        return {key: _copy_document(item) for key, item in value.items()}
    if kind is OrderedDict:  # how mongomock keeps a stored document
        return OrderedDict([(key, _copy_document(item)) for key, item in value.items()])
    if kind is list:
        return [_copy_document(item) for item in value]
    if kind in _SHARED_AS_IS:
        return value
    return copy.deepcopy(value, memo)


_UNCHANGED_BY_PATCHING = _SHARED_AS_IS - {datetime, bson.Timestamp}
"""Values ``patch_datetime_awareness_in_document`` returns as they are."""


def _patch_datetimes(value: Any) -> Any:
    """mongomock's ``patch_datetime_awareness_in_document`` (naive UTC milliseconds, as
    MongoDB stores dates), run on every inserted document and every update and filter: the
    same walk, but deciding by exact type first instead of a chain of ``isinstance``
    checks per value. Datetimes and anything unusual still go to mongomock's own."""
    kind = type(value)
    if kind is dict:
        return {key: _patch_datetimes(item) for key, item in value.items()}
    if kind is OrderedDict:
        return OrderedDict([(key, _patch_datetimes(item)) for key, item in value.items()])
    if kind is list:
        return [_patch_datetimes(item) for item in value]
    if kind in _UNCHANGED_BY_PATCHING:
        return value
    return _original_patch_datetimes(value)


_original_patch_datetimes: Callable[[Any], Any] = helpers.patch_datetime_awareness_in_document
_original_iter_documents = mm_collection.Collection._iter_documents
def _get_collection(self: Any, name: str, codec_options: Any = None,
                    read_preference: Any = None, write_concern: Any = None,
                    read_concern: Any = None) -> Any:
    """The collection object mongomock keeps for the name, which ``with_options`` returns
    when nothing different is asked of it, without comparing every option on every
    command (a twentieth of the emulator's time)."""
    asked = (codec_options, read_preference, write_concern, read_concern)
    kept = self._collection_accesses.get(name)
    if kept is not None and asked == (None, None, None, None):
        return kept
    return _original_get_collection(self, name, codec_options, read_preference,
                                    write_concern, read_concern)


_original_get_collection = mm_database.Database.get_collection
_original_ensure_uniques = mm_collection.Collection._ensure_uniques
_original_update = mm_collection.Collection._update
_original_remove_expired = store.CollectionStore._remove_expired_documents
_original_setitem = store.CollectionStore.__setitem__
_original_delitem = store.CollectionStore.__delitem__
_original_drop = store.CollectionStore.drop


def apply() -> None:
    global _applied
    if _applied:
        return
    mm_collection.Collection._iter_documents = _iter_documents
    # mongomock parses the same version strings on every insert and update.
    parse = functools.lru_cache(maxsize=None)(mm_collection.version.parse)  # type: ignore[attr-defined]
    mm_collection.version = types.SimpleNamespace(parse=parse)  # type: ignore[assignment,attr-defined]
    mm_database.Database.get_collection = _get_collection
    mm_collection.copy = types.SimpleNamespace(  # type: ignore[assignment,attr-defined]
        copy=copy.copy, deepcopy=_copy_document)
    helpers.patch_datetime_awareness_in_document = _patch_datetimes
    mm_collection.Collection._ensure_uniques = _ensure_uniques
    mm_collection.Collection._update = _update
    store.CollectionStore._remove_expired_documents = _remove_expired_documents
    store.CollectionStore.__setitem__ = _setitem
    store.CollectionStore.__delitem__ = _delitem
    store.CollectionStore.drop = _drop
    _applied = True
