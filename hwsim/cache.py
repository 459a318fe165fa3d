"""Identity-keyed caches: a value computed from an object (a traced graph, a weight array), remembered per object.

Graphs and weight arrays are not modified after they are made, and many of them are not hashable by value (numpy
arrays) or costly to hash (a graph's parameter table), so hwsim remembers what it derives from them by the object's
identity. One helper does it everywhere, so that every such cache holds the object it was computed from (its ``id``
can then never be reused by a new object while the entry lives), is bounded (least recently used entries go first),
is safe to use from several threads, and is emptied by one call, :func:`clear_caches` (public as
``hwsim.clear_caches()``: frees the memory, or starts a measurement cold).

    from hwsim.cache import identity_cache

    @identity_cache(maxsize=16)
    def folded(graph):          # the first argument is held by identity, the others must be hashable
        return fold_bn(graph)

    _PROGRAMS = IdentityCache("imc programs", maxsize=1024)
    prog = _PROGRAMS.get(weights, group, spec, compute=lambda: program(weights, group, spec))

This module imports only the standard library: every layer (``mapping`` included) may use it.
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["IdentityCache", "identity_cache", "clear_caches", "caches", "on_clear"]

V = TypeVar("V")

_ALL: list[IdentityCache] = []  # every cache made, in order (module-level caches live as long as the process)
_ALL_LOCK = threading.Lock()
_CLEARERS: list[Callable[[], None]] = []  # caches with their own eviction rule (on_clear)


class IdentityCache(Generic[V]):
    """Values keyed by an object's identity plus hashable extras, the last ``maxsize`` used kept.

    An entry holds a reference to its object, so a hit is always the same object (never a new one at a freed
    one's address). ``compute`` runs outside the lock: two threads missing together both compute, and the second
    result is kept (both are the same value, as ``compute`` is a function of the key)."""

    def __init__(self, name: str, maxsize: int):
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"IdentityCache {name!r}: maxsize must be a positive integer, got {maxsize!r}")
        self.name = name
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple, tuple[Any, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        with _ALL_LOCK:
            _ALL.append(self)

    def get(self, obj: Any, *extra: Hashable, compute: Callable[[], V]) -> V:
        """The value for (``obj`` by identity, ``extra`` by value); ``compute()`` makes it on a miss."""
        key = (id(obj), *extra)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] is obj:
                self._entries.move_to_end(key)
                self.hits += 1
                return hit[1]
            self.misses += 1
        value = compute()
        with self._lock:
            self._entries[key] = (obj, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"IdentityCache({self.name!r}, {len(self)}/{self.maxsize} entries, {self.hits} hits, {self.misses} misses)"


def identity_cache(maxsize: int, name: str | None = None) -> Callable[[Callable[..., V]], Callable[..., V]]:
    """Decorator: ``fn(obj, *args, **kwargs)`` remembered per ``obj`` (by identity) and ``args``/``kwargs`` (by
    value, so they must be hashable). The cache is the wrapper's ``cache`` attribute."""

    def deco(fn: Callable[..., V]) -> Callable[..., V]:
        cache: IdentityCache[V] = IdentityCache(name or f"{fn.__module__}.{fn.__qualname__}", maxsize)

        @functools.wraps(fn)
        def wrapper(obj: Any, *args: Hashable, **kwargs: Hashable) -> V:
            return cache.get(obj, args, tuple(sorted(kwargs.items())),
                             compute=lambda: fn(obj, *args, **kwargs))

        wrapper.cache = cache  # type: ignore[attr-defined]
        return wrapper

    return deco


def caches() -> tuple[IdentityCache, ...]:
    """Every identity-keyed cache made so far in this process."""
    with _ALL_LOCK:
        return tuple(_ALL)


def on_clear(fn: Callable[[], None]) -> Callable[[], None]:
    """Register ``fn`` (a cache's own clear function, for a cache whose eviction rule is not :class:`IdentityCache`'s
    least-recently-used count) to be called by :func:`clear_caches`; returns ``fn`` (usable as a decorator)."""
    with _ALL_LOCK:
        _CLEARERS.append(fn)
    return fn


def clear_caches() -> None:
    """Empty every identity-keyed cache of hwsim (traced graphs' derived forms, quantized weights, crossbar
    programs): frees their memory; the next call computes afresh and returns the same values."""
    for c in caches():
        c.clear()
    with _ALL_LOCK:
        clearers = tuple(_CLEARERS)
    for fn in clearers:
        fn()
