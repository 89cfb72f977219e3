"""The operator's view of the cluster: objects as the watch streams last delivered them.

Reconciles read from here instead of GET/LIST per reconcile, so a reconcile that
changes nothing makes no API request. The driver also stores what its own writes
returned (write-through), so the next decision starts from the object it wrote and
its conditional writes do not conflict with itself.

Watch handlers write on the event loop while reconciles read in worker threads. A
stored object is never changed in place (a newer version replaces it), so the lock
is held only to look objects up; the private copies a reader gets are made after it
is released, with orjson (several times faster than copy.deepcopy), so the event loop
never waits behind a copy.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

Obj = dict[str, Any]
Kind = tuple[str, str]  # (apiVersion, kind)


def newer_or_same(candidate: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether ``candidate`` is not older than ``current`` (the same object).

    resourceVersion is documented as opaque; on etcd it is the modification revision,
    an integer that only grows. If either is not an integer, trust the newcomer.
    """
    new = str((candidate.get("metadata") or {}).get("resourceVersion") or "")
    old = str((current.get("metadata") or {}).get("resourceVersion") or "")
    if new.isdigit() and old.isdigit():
        return int(new) >= int(old)
    return True


class ObjectCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # kind -> namespace -> name -> object
        self._objects: dict[Kind, dict[str, dict[str, Obj]]] = {}

    def put(self, obj: Mapping[str, Any]) -> bool:
        """Store ``obj`` unless the cache already holds a newer version of it."""
        kind, ns, name = _where(obj)
        with self._lock:
            names = self._objects.setdefault(kind, {}).setdefault(ns, {})
            current = names.get(name)
            if current is not None and not newer_or_same(obj, current):
                return False
            names[name] = dict(obj)
            return True

    def remove(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            names = self._objects.get((api_version, kind), {}).get(namespace)
            if names is not None:
                names.pop(name, None)
                if not names:
                    del self._objects[(api_version, kind)][namespace]

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        """A private copy (decisions may change what they are given)."""
        with self._lock:
            obj = self._objects.get((api_version, kind), {}).get(namespace, {}).get(name)
        return _copy(obj) if obj is not None else None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        where: Callable[[Obj], bool] | None = None,
    ) -> builtins.list[Obj]:
        """Private copies of the objects of a kind (in one namespace, or all), by name."""
        with self._lock:
            stored = builtins.list(self._iter(api_version, kind, namespace))
        found = [o for o in stored if where is None or where(o)]
        return [_copy(o) for o in sorted(found, key=_sort_key)]

    def keys(self, api_version: str, kind: str) -> builtins.list[tuple[str, str]]:
        with self._lock:
            return [
                (ns, name)
                for ns, names in self._objects.get((api_version, kind), {}).items()
                for name in names
            ]

    def count(self, api_version: str, kind: str) -> int:
        with self._lock:
            return sum(len(n) for n in self._objects.get((api_version, kind), {}).values())

    def _iter(self, api_version: str, kind: str, namespace: str | None) -> Iterator[Obj]:
        by_ns = self._objects.get((api_version, kind), {})
        spaces = [by_ns.get(namespace, {})] if namespace is not None else list(by_ns.values())
        for names in spaces:
            yield from names.values()


def label_filter(wanted: Mapping[str, str | None]) -> Callable[[Obj], bool]:
    """Objects whose labels carry every wanted value (None: the label is present)."""

    def match(obj: Obj) -> bool:
        have = (obj.get("metadata") or {}).get("labels") or {}
        return all(k in have and (v is None or have[k] == v) for k, v in wanted.items())

    return match


def _copy(obj: Obj) -> Obj:
    copied: Obj = orjson.loads(orjson.dumps(obj))
    return copied


def _where(obj: Mapping[str, Any]) -> tuple[Kind, str, str]:
    meta = obj["metadata"]
    return (
        (str(obj["apiVersion"]), str(obj["kind"])),
        str(meta.get("namespace") or ""),
        meta["name"],
    )


def _sort_key(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return str(meta.get("namespace") or ""), str(meta["name"])
