"""Small requests scored together: the kernel's cost per call is mostly fixed, so the leads of
requests that are ready at the same moment are scored in one call.

This is safe because there is one kernel: a lead's answer does not depend on what else is in
its batch (the parity property tests hold every path to that). Rounds run on the event loop:
while one round is scored, the next requests arrive on their sockets, and the loop reads them
all before it starts the next round. A request alone on the server waits for nobody.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Answer = dict[str, Any]


@dataclass
class _Waiting(Generic[Item]):
    model: object
    items: Sequence[Item]
    answer: asyncio.Future[list[Answer]]


@dataclass
class MicroBatcher(Generic[Item]):
    """Scores the items of concurrent requests with one `score(model, items)` call per round.

    `score` must answer one dict per item, in order, whatever else is in the call. A round takes
    what is queued for one model, up to `max_items` items.
    """

    score: Callable[[Any, Sequence[Item]], list[Answer]]
    max_items: int = 128
    _queue: list[_Waiting[Item]] = field(default_factory=list)
    _draining: bool = False
    _drainer: asyncio.Task[None] | None = None

    async def __call__(self, model: object, items: Sequence[Item]) -> list[Answer]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Answer]] = loop.create_future()
        self._queue.append(_Waiting(model, items, future))
        if not self._draining:
            self._draining = True
            # Kept: the loop holds tasks only weakly.
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                # One turn of the loop: the requests already read off their sockets join.
                await asyncio.sleep(0)
                round_, self._queue = self._take_round(self._queue)
                self._score_round(round_)
        finally:
            self._draining = False

    def _take_round(
        self, queue: list[_Waiting[Item]]
    ) -> tuple[list[_Waiting[Item]], list[_Waiting[Item]]]:
        """The first queued requests of the first one's model, up to `max_items` items (at least
        one request); the rest, in order."""
        model = queue[0].model
        count = 0
        for end, waiting in enumerate(queue):
            if waiting.model is not model or (end and count + len(waiting.items) > self.max_items):
                return queue[:end], queue[end:]
            count += len(waiting.items)
        return queue, []

    def _score_round(self, round_: list[_Waiting[Item]]) -> None:
        items = [item for waiting in round_ for item in waiting.items]
        try:
            answers = self.score(round_[0].model, items)
        except Exception as exc:
            if len(round_) == 1:
                _settle(round_[0], error=exc)
                return
            # One request's leads may be what failed: score each alone, so only it fails.
            logger.debug("a merged round failed; scoring its requests one by one", exc_info=True)
            for waiting in round_:
                self._score_round([waiting])
            return
        start = 0
        for waiting in round_:
            _settle(waiting, answers[start : start + len(waiting.items)])
            start += len(waiting.items)


def _settle(
    waiting: _Waiting[Any], result: list[Answer] | None = None, error: Exception | None = None
) -> None:
    future = waiting.answer
    if future.done():  # the request went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result or [])
