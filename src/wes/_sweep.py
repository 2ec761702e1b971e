"""The periodic saves of many channels, done together.

When the wheel finds many channels due for a periodic save in one tick, a task, a gather and
a future per channel would cost more than the save itself; the sweep instead snapshots them
all in one pass, hands their batches to the writers (which group them into one commit per
store), and concludes them in one pass when the writes end.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._channel import Channel
    from ._node import Node
    from ._writer import Ticket


class SaveSweep:
    """Collects channels due for a periodic save (each with its turn taken) and saves them in
    one task per loop iteration."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._due: list[Channel] = []

    def add(self, ch: Channel) -> None:
        """Save `ch` soon; the caller took its turn, which the sweep hands back."""
        if not self._due:
            asyncio.get_running_loop().call_soon(self._flush)
        self._due.append(ch)

    def _flush(self) -> None:
        channels, self._due = self._due, []
        if self._node.is_running:
            self._node.spawn(self._save(channels))
        else:
            for ch in channels:
                ch.pass_turn()

    async def _save(self, channels: list[Channel]) -> None:
        started = self._node.now()
        begun: list[tuple[Channel, list[Ticket]]] = []
        try:
            for ch in channels:
                futures = self._begin(ch)
                if futures is not None:
                    begun.append((ch, futures))
            for ch, tickets in begun:
                error: BaseException | None = None
                for ticket in tickets:
                    try:
                        await ticket.result()
                    except Exception as exc:
                        error = exc
                self._end(ch, started, error)
        finally:
            for ch in channels:
                ch.pass_turn()
                if ch.running:
                    ch.reschedule()

    @staticmethod
    def _begin(ch: Channel) -> list[Ticket] | None:
        if not ch.running:
            return None
        try:
            return ch.begin_save()
        except Exception as exc:
            ch.periodic_save_failed(exc)
            return None

    @staticmethod
    def _end(ch: Channel, started: float, error: BaseException | None) -> None:
        if not ch.running:
            return  # it crashed meanwhile; nothing to count or retry
        try:
            ch.end_save(started, error)
        except Exception as exc:
            ch.periodic_save_failed(exc)
        else:
            ch.save_retry = None
