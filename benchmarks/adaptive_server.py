"""``python -m benchmarks.adaptive_server MODE``: the three servers of ``python -m benchmarks adaptive``.

A minimal HTTP/1.1 server (raw asyncio protocol, keep-alive, no pipelining) answering every POST
with the canned Info reply, shaped by ``MODE``:

* ``capacity``: a token bucket of ``--rate`` requests per second (burst ``--burst``); a request
  that finds a token is answered after ``--latency`` seconds, one that finds none is refused at
  once with ``429`` and ``Retry-After: 1`` (whole seconds, as HTTP allows).
* ``queue``: ``--servers`` requests are served at once, each taking ``--latency`` seconds; the
  others wait in a FIFO queue, so latency grows with the requests in flight past that knee.
  Nothing is refused.
* ``unlimited``: the canned reply at once.

``GET /stats`` answers ``{"served": n, "refused": n}`` (the benchmark reads it before and after
each run). Prints the URL on stdout once listening, then serves until stdin reaches EOF (the
harness closes it, or dies) or SIGTERM arrives. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import sys
from typing import Final

from .common import LOOPBACK, canned_info_body

MODES: Final = ("capacity", "queue", "unlimited")


def _reply(status: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


class Shape:
    """The server's policy and its counters (shared by every connection)."""

    def __init__(self, mode: str, *, rate: float, burst: float, latency: float, servers: int):
        self.mode = mode
        self.rate = rate
        self.burst = burst
        self.latency = latency
        self.servers = servers
        self.served = 0
        self.refused = 0
        self.ok = _reply("200 OK", canned_info_body())
        self.too_many = _reply(
            "429 Too Many Requests",
            b'{"status":"error","error_description":"too many requests"}',
            "Retry-After: 1\r\n",
        )
        self._tokens = burst
        self._filled_at = 0.0
        self._busy = 0
        self._queue: collections.deque[asyncio.Transport] = collections.deque()
        self._loop = asyncio.get_running_loop()

    def handle(self, transport: asyncio.Transport) -> None:
        loop = self._loop
        if self.mode == "unlimited":
            self.served += 1
            transport.write(self.ok)
        elif self.mode == "capacity":
            now = loop.time()
            self._tokens = min(self.burst, self._tokens + (now - self._filled_at) * self.rate)
            self._filled_at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.served += 1
                loop.call_later(self.latency, self._answer, transport)
            else:
                self.refused += 1
                transport.write(self.too_many)
        elif self._busy < self.servers:
            self._busy += 1
            loop.call_later(self.latency, self._done, transport)
        else:
            self._queue.append(transport)

    def _answer(self, transport: asyncio.Transport) -> None:
        if not transport.is_closing():
            transport.write(self.ok)

    def _done(self, transport: asyncio.Transport) -> None:
        self.served += 1
        self._answer(transport)
        if self._queue:
            self._loop.call_later(self.latency, self._done, self._queue.popleft())
        else:
            self._busy -= 1


class Connection(asyncio.Protocol):
    def __init__(self, shape: Shape) -> None:
        self._shape = shape
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        transport = self._transport
        assert transport is not None
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(buffer) < end + 4 + length:
                break
            buffer = buffer[end + 4 + length :]
            if head.startswith("GET /stats"):
                counts = {"served": self._shape.served, "refused": self._shape.refused}
                transport.write(_reply("200 OK", json.dumps(counts).encode()))
            else:
                self._shape.handle(transport)
        self._buffer = buffer


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: None if os.read(stdin, 4096) else stopped.set())
    shape = Shape(
        args.mode,
        rate=args.rate,
        burst=args.burst,
        latency=args.latency,
        servers=args.servers,
    )
    server = await loop.create_server(lambda: Connection(shape), LOOPBACK, 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"http://{LOOPBACK}:{port}", flush=True)
    async with server:
        await stopped.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.adaptive_server")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--rate", type=float, default=2000.0, help="capacity: tokens per second")
    parser.add_argument("--burst", type=float, default=50.0, help="capacity: bucket size")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per reply")
    parser.add_argument("--servers", type=int, default=32, help="queue: served at once")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
