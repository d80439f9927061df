"""Polling until something is true: for the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T]], timeout: float = 10.0, interval: float = 0.1
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.1
) -> T: ...


async def wait_for(
    predicate: Callable[[], Awaitable[T]] | Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.1,
) -> T:
    """Poll a predicate (plain or async) until it returns something truthy.

    Returns that value, or the last (falsy) one when the timeout passes.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(interval)
