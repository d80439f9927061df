"""Polling until something is true: for the tests and the benchmarks.

``wait_for`` fails (``AssertionError``) when the time runs out, so a test that
waits for something and forgets to assert still goes red.  ``poll_until`` is the
non-failing form, for a caller that takes whatever value is there at the end
(it asserts itself, with its own message) or waits for something that should
*not* happen.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast, overload

T = TypeVar("T")


@overload
async def poll_until(
    predicate: Callable[[], Awaitable[T]], timeout: float = 10.0, interval: float = 0.1
) -> T: ...


@overload
async def poll_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.1
) -> T: ...


async def poll_until(
    predicate: Callable[[], Awaitable[T]] | Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.1,
) -> T:
    """Poll a predicate (plain or async) until it returns something truthy.

    Returns that value, or the last (falsy) one when the timeout passes: never
    fails.  The caller checks the value (or wants it falsy).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            return value
        await asyncio.sleep(interval)


# A wait that succeeded returns a truthy value: never the None of "not yet".
@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T | None]],
    timeout: float = 10.0,
    interval: float = 0.1,
    *,
    what: str | None = None,
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = 0.1,
    *,
    what: str | None = None,
) -> T: ...


async def wait_for(
    predicate: Callable[[], Awaitable[T | None]] | Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = 0.1,
    *,
    what: str | None = None,
) -> T:
    """Poll a predicate (plain or async) until it returns something truthy; return it.

    When ``timeout`` seconds pass first, fail: ``AssertionError`` naming what was
    awaited (``what``, else the predicate's name or source) and its last value.
    For waits that may legitimately time out, use ``poll_until``.
    """
    value = cast(T, await poll_until(predicate, timeout, interval))
    if not value:
        raise AssertionError(
            f"timed out after {timeout:g} s waiting for {what or _describe(predicate)}"
            f" (last value: {value!r})"
        )
    return value


def _describe(predicate: Callable[[], object]) -> str:
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    if name.endswith("<lambda>"):
        try:
            return inspect.getsource(predicate).strip()
        except (OSError, TypeError):
            pass
    return name
