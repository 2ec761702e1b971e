"""Running a coroutine at once (`_eager.run_now`): up to where it first waits in the
caller's stack, the rest as a task, each in a context of its own."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from wes._eager import run_now

var: contextvars.ContextVar[str] = contextvars.ContextVar("test_eager_var", default="caller's")


async def test_a_coroutine_that_never_waits_finishes_at_once_without_a_task() -> None:
    seen: list[str] = []
    tasks: set[asyncio.Task[Any]] = set()

    async def quick() -> None:
        seen.append("ran")

    run_now(quick(), tasks)
    assert seen == ["ran"] and not tasks


async def test_a_coroutine_that_waits_goes_on_as_a_task_that_leaves_the_set() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    seen: list[str] = []
    tasks: set[asyncio.Task[Any]] = set()

    async def waits() -> None:
        seen.append("started")
        seen.append(await gate)
        await asyncio.sleep(0)  # a bare yield, too
        seen.append("done")

    run_now(waits(), tasks)
    assert seen == ["started"] and len(tasks) == 1
    (task,) = tasks
    gate.set_result("woken")
    await task
    assert seen == ["started", "woken", "done"] and not tasks


async def test_what_the_coroutine_sets_in_its_context_stays_its_own_across_waits() -> None:
    seen: list[str] = []
    tasks: set[asyncio.Task[Any]] = set()

    async def sets() -> None:
        var.set("its own")
        await asyncio.sleep(0)
        seen.append(var.get())

    run_now(sets(), tasks)
    assert var.get() == "caller's"
    await asyncio.gather(*tasks)
    assert seen == ["its own"] and var.get() == "caller's"


async def test_cancelling_the_rest_cancels_the_coroutine_where_it_waits() -> None:
    seen: list[str] = []
    tasks: set[asyncio.Task[Any]] = set()

    async def sleeps() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            seen.append("cleaned up")

    run_now(sleeps(), tasks)
    (task,) = tasks
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled", "cleaned up"] and not tasks


async def test_an_error_after_the_first_wait_ends_the_task_with_it() -> None:
    tasks: set[asyncio.Task[Any]] = set()

    async def fails() -> None:
        await asyncio.sleep(0)
        raise KeyError("late")

    run_now(fails(), tasks)
    (task,) = tasks
    with pytest.raises(KeyError, match="late"):
        await task


async def test_an_error_before_the_first_wait_reaches_the_caller() -> None:
    async def fails() -> None:
        raise KeyError("early")

    with pytest.raises(KeyError, match="early"):
        run_now(fails(), set())
