"""The event bus's Announcer: few announcements, sent after the writer's next step."""

from __future__ import annotations

import asyncio

from offload.events.bus import EVERYTHING, MAX_IDS, Announcer
from offload.ids import uuid7, uuid7_many


class Recorder:
    def __init__(self, fail_first: bool = False) -> None:
        self.sent: list[str] = []
        self.order: list[str] = []
        self._fail = fail_first

    async def send(self, payload: str) -> None:
        self.order.append("send")
        if self._fail:
            self._fail = False
            raise ConnectionError("the database went away")
        self.sent.append(payload)


async def test_writes_in_one_loop_turn_become_one_announcement_naming_each_job() -> None:
    recorder = Recorder()
    announce = Announcer(recorder.send)
    first, second, third = uuid7(), uuid7(), uuid7()

    announce([first])
    announce([second, third])
    announce([first])
    await announce.drain()

    assert recorder.sent == [",".join(sorted(str(i) for i in (first, second, third)))]


async def test_a_bulk_write_is_announced_as_any_job() -> None:
    recorder = Recorder()
    announce = Announcer(recorder.send)

    announce(uuid7_many(MAX_IDS))
    announce([uuid7()])  # one more than fits in a payload
    await announce.drain()

    assert recorder.sent == [EVERYTHING]


async def test_the_writers_next_step_goes_before_the_send() -> None:
    # A worker announces its claim, then starts the claimed job: the job must not wait
    # behind the announcement's round trip.
    recorder = Recorder()
    announce = Announcer(recorder.send)

    async def handler() -> None:
        recorder.order.append("handler")

    announce([uuid7()])
    job = asyncio.get_running_loop().create_task(handler())
    await announce.drain()
    await job

    assert recorder.order == ["handler", "send"]


async def test_a_failed_send_is_dropped_and_later_writes_are_still_announced() -> None:
    recorder = Recorder(fail_first=True)
    announce = Announcer(recorder.send)
    lost, later = uuid7(), uuid7()

    announce([lost])
    await announce.drain()
    announce([later])
    await announce.drain()

    assert recorder.sent == [str(later)]


async def test_writes_during_a_send_go_in_the_next_announcement() -> None:
    gate, in_flight = asyncio.Event(), asyncio.Event()
    sent: list[str] = []

    async def slow_send(payload: str) -> None:
        sent.append(payload)
        in_flight.set()
        await gate.wait()

    announce = Announcer(slow_send)
    first, second = uuid7(), uuid7()
    announce([first])
    await asyncio.wait_for(in_flight.wait(), 10)
    announce([second])  # while the first is in flight
    gate.set()
    await announce.drain()

    assert sent == [str(first), str(second)]
