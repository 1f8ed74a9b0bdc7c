"""Small requests that are ready together share one kernel call, and still get their own answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from serve.batching import MicroBatcher


class Kernel:
    """Answers each item with its own value; fails on "bad" items; records its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, model: object, items: Sequence[str]) -> list[dict[str, Any]]:
        self.calls.append(len(items))
        if "bad" in items:
            raise ValueError("cannot score 'bad'")
        return [{"item": item, "model": model} for item in items]


def test_ready_requests_share_a_call_and_get_their_own_answers() -> None:
    kernel = Kernel()

    async def run() -> list[list[dict[str, Any]]]:
        batcher = MicroBatcher(kernel, max_items=5)
        requests = [[f"r{i}a", f"r{i}b"] if i % 2 else [f"r{i}"] for i in range(8)]
        return await asyncio.gather(*(batcher("m", items) for items in requests))

    answers = asyncio.run(run())
    assert [[a["item"] for a in answer] for answer in answers] == [
        [f"r{i}a", f"r{i}b"] if i % 2 else [f"r{i}"] for i in range(8)
    ]
    # 12 items in rounds of at most 5 (a request is never split): fewer calls than requests.
    assert sum(kernel.calls) == 12 and max(kernel.calls) <= 5 and len(kernel.calls) < 8


def test_a_request_alone_is_scored_alone() -> None:
    kernel = Kernel()

    async def run() -> list[dict[str, Any]]:
        return await MicroBatcher(kernel)("m", ["only"])

    assert asyncio.run(run()) == [{"item": "only", "model": "m"}]
    assert kernel.calls == [1]


def test_one_bad_request_fails_alone() -> None:
    kernel = Kernel()

    async def run() -> list[Any]:
        batcher = MicroBatcher(kernel)
        calls = [batcher("m", ["a"]), batcher("m", ["bad"]), batcher("m", ["c"])]
        return await asyncio.gather(*calls, return_exceptions=True)

    good, bad, other = asyncio.run(run())
    assert good == [{"item": "a", "model": "m"}] and other == [{"item": "c", "model": "m"}]
    assert isinstance(bad, ValueError)


def test_requests_for_another_model_are_not_mixed_in() -> None:
    kernel = Kernel()

    async def run() -> list[list[dict[str, Any]]]:
        batcher = MicroBatcher(kernel)
        return await asyncio.gather(
            batcher("old", ["a"]), batcher("new", ["b"]), batcher("old", ["c"])
        )

    answers = asyncio.run(run())
    assert [answer[0]["model"] for answer in answers] == ["old", "new", "old"]


@pytest.mark.parametrize("size", [1, 3])
def test_every_item_is_answered_once(size: int) -> None:
    kernel = Kernel()

    async def run() -> list[list[dict[str, Any]]]:
        batcher = MicroBatcher(kernel, max_items=4)
        return await asyncio.gather(
            *(batcher("m", [f"{i}.{j}" for j in range(size)]) for i in range(20))
        )

    answers = asyncio.run(run())
    items = [a["item"] for answer in answers for a in answer]
    assert items == [f"{i}.{j}" for i in range(20) for j in range(size)]
    assert sum(kernel.calls) == 20 * size
