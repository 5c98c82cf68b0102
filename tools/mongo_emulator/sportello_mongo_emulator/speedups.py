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
- unique indexes compare key tuples directly instead of running a filter
  per document;
- TTL expiry runs at most once a second per collection (MongoDB's own TTL
  monitor runs every 60 seconds).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from mongomock import collection as mm_collection
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


def _iter_documents(self: Any, spec: Any) -> Iterator[Any]:
    if spec is None or not isinstance(spec, Mapping) or not spec:
        return _original_iter_documents(self, spec)
    ids = _candidate_ids(spec)
    if ids is not None:
        documents = self._store._documents
        candidates = [documents[i] for i in ids if i in documents]
        if not candidates:
            filter_applies(spec, {})  # still validate the filter, as mongomock does
    else:
        equalities = _scalar_equalities(spec)
        if not equalities:
            return _original_iter_documents(self, spec)
        candidates = [d for d in _all(self._store) if _may_match(d, equalities)]
        if not candidates:
            filter_applies(spec, {})
    return (d for d in candidates if filter_applies(spec, d))


def _ensure_uniques(self: Any, new_data: Mapping[str, Any]) -> None:
    for index in self._store.indexes.values():
        if not index.get("unique"):
            continue
        if index.get("partialFilterExpression") is not None:
            _original_ensure_uniques(self, new_data)
            return
        fields = [key for key, _ in index["key"]]
        wanted = _key_of(new_data, fields)
        if index.get("sparse") and all(v is None for v in wanted):
            continue
        if any(isinstance(v, (list, dict)) for v in wanted):
            _original_ensure_uniques(self, new_data)  # multikey or embedded: mongomock's way
            return
        same = 0
        for document in _all(self._store):
            if _key_of(document, fields) == wanted:
                same += 1
                if same > 1:  # new_data is already in the store, so one match is itself
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


def _remove_expired_documents(self: Any) -> None:
    now = time.monotonic()
    if now - getattr(self, "_sportello_last_expiry", 0.0) < 1.0:
        return
    self._sportello_last_expiry = now
    _original_remove_expired(self)


_original_iter_documents = mm_collection.Collection._iter_documents
_original_ensure_uniques = mm_collection.Collection._ensure_uniques
_original_remove_expired = store.CollectionStore._remove_expired_documents


def apply() -> None:
    global _applied
    if _applied:
        return
    mm_collection.Collection._iter_documents = _iter_documents
    mm_collection.Collection._ensure_uniques = _ensure_uniques
    store.CollectionStore._remove_expired_documents = _remove_expired_documents
    _applied = True
