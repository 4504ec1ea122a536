"""The live tail's fan-out alone: ``Broadcaster.since`` as thousands of quiet streams ask it.

  python -m bench.tail [--quick] [--conversations N] [--firehose F] [--batch B] [--wakes W]

N conversation streams (one each, as the SSE layer filters them: organization, conversation,
``operator`` visibility) and F firehose streams (``user`` visibility) follow a broadcaster that
is fed events at random conversations, ``B`` events per wake (one coalesced wake window). After
each publish every stream whose channel the batch touched asks ``since`` from its own cursor,
as a woken SSE stream does, and moves its cursor to the page's position; a quiet conversation's
cursor is then about N events behind the head. No server, no sockets, no database: what is
timed is the broadcaster's share of a wake (``since`` per woken stream, ``publish`` per event).

Prints one line per measure and a last JSON line; ``delivered`` and ``behind`` must be equal
for any two versions run with the same arguments (same seed, same events).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from dataclasses import dataclass, field

from bench._machine import describe_machine
from eventstore import AgentEvent, Broadcaster, EventFilter, Visibility

ORG = "org-bench"
VISIBILITIES = ("user",) * 6 + ("operator",) * 3 + ("internal",)


@dataclass
class Tally:
    """What the measured wakes cost and delivered."""

    since_calls: int = 0
    since_seconds: float = 0.0
    published: int = 0
    publish_seconds: float = 0.0
    delivered: int = 0
    behind: int = 0
    cursors: dict[int, int] = field(default_factory=dict)


def event(event_id: int, conversation: int, rng: random.Random) -> AgentEvent:
    return AgentEvent(
        id=event_id,
        organization_id=ORG,
        run_id=f"run-{conversation}",
        conversation_id=f"conv-{conversation}",
        sequence=event_id,
        event_type="custom.tick",
        visibility=rng.choice(VISIBILITIES),
        payload_json="{}",
        created_at="2026-12-01T00:00:00.000000Z",
        prev_hash="",
        hash="h",
    )


class Scenario:
    """One broadcaster, its streams' cursors and filters, and the events fed to it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.rng = random.Random(args.seed)
        self.conversations = args.conversations
        self.firehose = args.firehose
        self.batch = args.batch
        self.broadcaster = Broadcaster(0, capacity=args.capacity)
        self.filters = [
            EventFilter(ORG, conversation_id=f"conv-{c}", visibility=Visibility.OPERATOR)
            for c in range(self.conversations)
        ]
        self.everything = EventFilter(ORG, visibility=Visibility.USER)
        self.next_id = 1

    def open_streams(self) -> None:
        """Register every stream, as ``subscribe`` does: it is what keeps a kind's lanes."""
        for conversation in range(self.conversations):
            self.broadcaster.register(("conversation", f"conv-{conversation}"))
        for _ in range(self.firehose):
            self.broadcaster.register(("all",))

    def fill(self, count: int) -> None:
        """Publish ``count`` events without streams: the buffer starts full."""
        while count > 0:
            size = min(count, self.batch)
            self.broadcaster.publish(self._events(size)[1], self.next_id - size - 1)
            count -= size

    def _events(self, size: int) -> tuple[set[int], list[AgentEvent]]:
        touched: set[int] = set()
        events = []
        for _ in range(size):
            conversation = self.rng.randrange(self.conversations)
            touched.add(conversation)
            events.append(event(self.next_id, conversation, self.rng))
            self.next_id += 1
        return touched, events

    def wake(self, tally: Tally) -> None:
        """One window: publish a batch, then every woken stream asks for its page."""
        touched, events = self._events(self.batch)
        started = time.perf_counter()
        self.broadcaster.publish(events, events[0].id - 1)
        tally.publish_seconds += time.perf_counter() - started
        tally.published += len(events)
        head = self.broadcaster.last_id
        started = time.perf_counter()
        for conversation in sorted(touched):
            self._ask(tally, conversation, self.filters[conversation], head)
        for stream in range(self.firehose):
            self._ask(tally, -1 - stream, self.everything, head)
        tally.since_seconds += time.perf_counter() - started

    def _ask(self, tally: Tally, stream: int, flt: EventFilter, head: int) -> None:
        cursor = tally.cursors.get(stream, head - self.batch)
        if not self.broadcaster.covers(cursor):  # a real stream would read the database
            tally.behind += 1
            tally.cursors[stream] = head
            return
        page = self.broadcaster.since(cursor, flt)
        tally.since_calls += 1
        tally.delivered += len(page.events)
        tally.cursors[stream] = page.position


async def run(args: argparse.Namespace) -> dict[str, float]:
    scenario = Scenario(args)
    scenario.fill(args.capacity)
    scenario.open_streams()
    tally = Tally()
    for _ in range(args.warm_wakes):  # until the cursors are spread as in the steady state
        scenario.wake(tally)
    measured = Tally(cursors=tally.cursors)
    for _ in range(args.wakes):
        scenario.wake(measured)
    return {
        "since_us": measured.since_seconds / measured.since_calls * 1e6,
        "publish_us_per_event": measured.publish_seconds / measured.published * 1e6,
        "since_calls": measured.since_calls,
        "delivered": measured.delivered,
        "behind": measured.behind,
        "wake_ms": (measured.since_seconds + measured.publish_seconds) / args.wakes * 1e3,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 conversations, 20 wakes")
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--firehose", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000, help="events per wake window")
    parser.add_argument("--wakes", type=int, default=60, help="measured wakes")
    parser.add_argument("--warm-wakes", type=int, default=30)
    parser.add_argument("--capacity", type=int, default=20_000, help="the buffer's size")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args(argv)
    if args.quick:
        args.conversations, args.wakes, args.warm_wakes = 2000, 20, 10
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    print(describe_machine())
    result = asyncio.run(run(args))
    print(
        f"{args.conversations} conversation streams + {args.firehose} firehose, "
        f"{args.batch} events per wake, buffer {args.capacity}"
    )
    print(f"since per woken stream   {result['since_us']:9.1f} µs")
    print(f"publish per event        {result['publish_us_per_event']:9.2f} µs")
    print(f"broadcaster per wake     {result['wake_ms']:9.2f} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
