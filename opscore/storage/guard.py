"""Shared stores answer StorageError (503) while their server is unreachable: every public
coroutine method of the store class is wrapped once, at import, by ``guard_methods``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from ..errors import OpsCoreError, StorageError

R = TypeVar("R")


def guard_methods(
    store: type,
    driver_errors: Callable[[], tuple[type[BaseException], ...]],
    name: str,
    *,
    skip: Collection[str] = (),
) -> None:
    """Wrap every public coroutine method of ``store`` (but ``skip``): the errors
    ``driver_errors()`` names become StorageError("{name} unavailable: ..."); domain errors
    pass through. ``driver_errors`` is called per failure, so drivers still load lazily."""

    def guard(method: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @functools.wraps(method)
        async def wrapper(*args: Any, **kwargs: Any) -> R:
            try:
                return await method(*args, **kwargs)
            except OpsCoreError:
                raise
            except Exception as exc:
                if isinstance(exc, driver_errors()):
                    raise StorageError(f"{name} unavailable: {exc}") from exc
                raise

        return wrapper

    for attr in {n for klass in store.__mro__[:-1] for n in vars(klass)}:
        if attr.startswith("_") or attr in skip:
            continue
        method = getattr(store, attr)
        if inspect.iscoroutinefunction(method):
            setattr(store, attr, guard(method))
