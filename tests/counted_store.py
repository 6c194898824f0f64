"""A store whose ``Storage`` calls are counted, by method: what the tests that say "one
store call less" and ``bench.store_calls`` count with."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from opscore.storage.base import Storage


def counted(storage: Storage) -> Counter[str]:
    """Count every call of a ``Storage`` method on ``storage`` from now on (its class is
    swapped for a subclass, so ``isinstance`` checks and everything else still hold)."""
    calls: Counter[str] = Counter()
    cls = type(storage)

    def wrap(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return await fn(self, *args, **kwargs)

        return method

    names = {  # the queue's methods too (QueueStore, a base of Storage)
        n
        for klass in Storage.__mro__
        if klass.__module__ == Storage.__module__
        for n, v in vars(klass).items()
        if inspect.iscoroutinefunction(v)
    }
    namespace = {n: wrap(n, getattr(cls, n)) for n in names if hasattr(cls, n)}
    storage.__class__ = type(f"Counted{cls.__name__}", (cls,), namespace)
    return calls
