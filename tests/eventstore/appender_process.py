"""A child process for the durability tests: appends forever, printing each acknowledged id."""

from __future__ import annotations

import asyncio
import sys

from eventstore import NewEvent, open_store


async def main(database: str) -> None:
    async with open_store(database) as store:
        for n in range(8):
            created = NewEvent("run_created", {"agent_id": "a"})
            await store.append("org", f"run-{n}", [created], conversation_id="conv")

        async def appender(n: int) -> None:
            while True:
                events = await store.append("org", f"run-{n}", [NewEvent("custom.tick", {"n": n})])
                print(events[-1].id, flush=True)

        await asyncio.gather(*(appender(n) for n in range(8)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
