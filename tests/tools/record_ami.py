"""Record a raw AMI transcript from the sandbox while scripted calls run.

    .venv/bin/python -m tests.tools.record_ami tests/data/ami/queue_calls.ami

Needs `make asterisk-up` and `hotline serve` (for the IVR).  The transcript is
the bytes Asterisk sent after login, so tests can replay them through a fake
TCP peer, split at any byte.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from harness.sipp import Agent, Keys, Pause, run_caller

REPO = Path(__file__).resolve().parents[2]


async def main(out: Path) -> None:
    secret = (REPO / ".run/ami_secret").read_text().strip()
    reader, writer = await asyncio.open_connection("127.0.0.1", 5038)
    await reader.readline()  # banner
    writer.write(f"Action: Login\r\nUsername: hotline\r\nSecret: {secret}\r\n\r\n".encode())
    await writer.drain()
    captured = bytearray()

    async def pump() -> None:
        while chunk := await reader.read(65536):
            captured.extend(chunk)

    task = asyncio.create_task(pump())
    # 1: a caller presses 1 (billing) then 0; agent 1001 answers; caller hangs up.
    agent = Agent("1001")
    await agent.start()
    await run_caller(
        [Pause(1500), Keys("1"), Pause(2500), Keys("0"), Pause(5000)], number="5550201"
    )
    await agent.wait(10)
    await agent.stop()
    # 2: a caller queues for support with nobody answering and hangs up (abandoned).
    await run_caller([Pause(1500), Keys("0"), Pause(4000)], number="5550202")
    await asyncio.sleep(1)
    writer.write(b"Action: Logoff\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.5)
    task.cancel()
    writer.close()
    # Drop the login response; keep everything after it.
    text = bytes(captured)
    start = text.find(b"\r\n\r\n") + 4
    out.write_bytes(text[start:])
    print(f"{out}: {len(text) - start} bytes, {text.count(b'Event: ')} events")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
