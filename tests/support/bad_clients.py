"""FastAGI clients that are not Asterisk: garbage of every kind, sent over real TCP."""

from __future__ import annotations

import asyncio
import os

BAD_CLIENTS = {
    "random bytes": os.urandom(4096),
    "http request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "over-long line": b"agi_channel: " + b"x" * 100_000 + b"\n\n",
    "too many lines": b"".join(b"agi_x%d: y\n" % i for i in range(500)) + b"\n",
    "no script or channel": b"agi_network: yes\nagi_language: en\n\n",
    "closed half way": b"agi_network: yes\nagi_chan",
    "invalid utf-8": b"agi_channel: \xff\xfe\n\n",
}


async def send_garbage(port: int, payload: bytes, close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    if close:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()
