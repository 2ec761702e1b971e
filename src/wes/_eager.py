"""Running a coroutine at once: up to where it first waits, in the caller's stack, and
only what is left of it as a task (what asyncio's eager tasks do, on every Python we
support, and without a task at all when nothing is left).

A served call on a free channel whose handlers are all synchronous finishes without ever
waiting; making a task of it would cost it more than the call itself. The coroutine runs
in a copy of the current context, as a task would, so what it sets there stays its own.
Until it first waits, `asyncio.current_task()` is the caller's task: only code that cannot
run a user's coroutine may be started this way (see `_serving.Server.on_request`).
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Coroutine, Generator
from typing import Any


def run_now(coro: Coroutine[Any, Any, None], tasks: set[asyncio.Task[Any]]) -> None:
    """Run `coro` until it first waits; then the rest runs as a task in `tasks` (which it
    leaves when done)."""
    context = contextvars.copy_context()
    try:
        waiting_for = context.run(coro.send, None)
    except StopIteration:
        return
    rest = _rest(coro, waiting_for)
    task = asyncio.get_running_loop().create_task(rest, context=context)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _rest(coro: Coroutine[Any, Any, None], waiting_for: Any) -> None:
    await _drive(coro, waiting_for)


@types.coroutine
def _drive(coro: Coroutine[Any, Any, None], waiting_for: Any) -> Generator[Any, Any, None]:
    """Hands the task what `coro` waits for, and `coro` what the task sends or throws
    (a cancellation, above all) until it returns."""
    while True:
        try:
            sent = yield waiting_for
        except BaseException as exc:
            try:
                waiting_for = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting_for = coro.send(sent)
            except StopIteration:
                return
