"""A raw-socket HTTP server that misbehaves on purpose, for tests (not ``FakeFreedomPay``).

``HostileServer(reply)`` listens on ``127.0.0.1:0`` with :func:`asyncio.start_server`, reads each
request by hand (request line, headers, a ``Content-Length`` body) and lets ``reply`` write
whatever bytes it likes: compression bombs, lying ``Content-Length``, endless or malformed
bodies, deeply nested JSON. Every request seen is kept in ``server.requests`` (with its headers,
so a test knows the signature the client sent). Keep-alive is honoured unless ``reply`` closes.

Run as a script it measures the client's peak RSS against one hostile reply, in a fresh process
(``ru_maxrss`` is per process)::

    python -m tests.hostile bomb gzip 500      # prints JSON: added peak RSS, error raised
    python -m tests.hostile deadline           # seconds for timeout=5 against 429 + Retry-After
    python -m tests.hostile outcomes           # what deep JSON, huge ints, NaN money end in
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import resource
import sys
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType

AUTH_ID = "hostile-test"
SECRET_KEY = "hostile-secret-key-0123456789"


@dataclasses.dataclass(frozen=True)
class RawRequest:
    """One request as it arrived: method, path, lower-cased headers, body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Reply = Callable[[RawRequest, asyncio.StreamWriter], Awaitable[None]]


def http_reply(
    body: bytes = b"",
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    length: int | str | None = "auto",
) -> bytes:
    """A whole HTTP/1.1 reply. ``length``: ``"auto"`` (the true one), an int (a lie, or the
    compressed size), or ``None`` (no Content-Length and no chunking: the body ends at EOF)."""
    lines = [f"HTTP/1.1 {status} Hostile", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if length == "auto":
        lines.append(f"Content-Length: {len(body)}")
    elif isinstance(length, int):
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def respond(
    body: bytes = b"",
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    length: int | str | None = "auto",
    close: bool = False,
) -> Reply:
    """A reply that writes the same bytes to every request (see :func:`http_reply`)."""
    data = http_reply(body, status=status, headers=headers, length=length)

    async def reply(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        if close or length is None:
            writer.close()

    return reply


def chunked(
    pieces: Callable[[], Iterable[bytes]], *, headers: Mapping[str, str] | None = None
) -> Reply:
    """A chunked reply whose chunks come from ``pieces()`` (an iterable of bytes)."""
    head = ["HTTP/1.1 200 Hostile", "Content-Type: application/json", "Transfer-Encoding: chunked"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    start = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")

    async def reply(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(start)
        for piece in pieces():
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return reply


def route(choose: Callable[[RawRequest], Reply]) -> Reply:
    """A reply chosen per request (by path, by body, ...)."""

    async def reply(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        await choose(request)(request, writer)

    return reply


def stall(seconds: float = 3600.0) -> Reply:
    """Read the request, then send nothing for ``seconds`` (ended early by ``aclose``)."""

    async def reply(_request: RawRequest, _writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(seconds)

    return reply


def raw(data: bytes) -> Reply:
    """Write ``data`` as is (a broken status line, half a header, ...), then close."""

    async def reply(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        writer.close()

    return reply


@functools.lru_cache(maxsize=8)
def bomb(encoding: str, megabytes: int) -> bytes:
    """``megabytes`` MiB of zeros, compressed (``gzip`` / ``deflate``): ~1/1000 of the size."""
    wbits = {"gzip": 31, "deflate": 15}[encoding]
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = b"\0" * (1024 * 1024)
    out = [
        compressor.compress(
            b'{"status":"ok","request_status":"0","dt":"2024-01-01T00:00:00Z","padding":"'
        )
    ]
    for _ in range(megabytes):
        out.append(compressor.compress(block))
    out.append(compressor.flush())
    return b"".join(out)


def deep_json(levels: int) -> bytes:
    """``[[[...]]]`` nested ``levels`` deep."""
    return b"[" * levels + b"]" * levels


class HostileServer:
    """``async with HostileServer(reply) as server:`` then point a client at ``server.url``."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[RawRequest] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> HostileServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            for task in list(self._handlers):
                with contextlib.suppress(BaseException):
                    await task
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while not writer.is_closing():
                request = await _read_request(reader)
                if request is None:
                    break
                self.requests.append(request)
                await self.reply(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # aclose() cancelled us: end quietly (3.11's start_server logs a cancelled handler)
        finally:
            writer.close()
            self._handlers.discard(task)


async def _read_request(reader: asyncio.StreamReader) -> RawRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawRequest(method, path, headers, body)


# -- peak RSS of one hostile reply, measured in this (fresh) process ---------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _measure(kind: str, encoding: str, megabytes: int) -> dict[str, object]:
    from freedompay_async import FreedomPayClient, FreedomPayError

    payload = bomb(encoding, megabytes)
    headers = {"Content-Encoding": encoding}
    if kind == "bomb":  # Content-Length: the compressed size
        reply = respond(payload, headers=headers)
    else:  # "bomb-chunked": no Content-Length
        step = 16 * 1024
        reply = chunked(
            lambda: (payload[i : i + step] for i in range(0, len(payload), step)), headers=headers
        )
    ok = respond(
        b'{"status":"ok","request_status":"0","dt":"2024-01-01T00:00:00Z","wallet":{"wallet_id":"3f1c7c1e-7a4b-4c1e-9d3e-2b5c6a7d8e9f",'
        b'"currency":"KZT","balance":"1.00"}}'
    )
    state = {"reply": ok}

    async def dispatch(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        await state["reply"](request, writer)

    async with HostileServer(dispatch) as server:
        async with FreedomPayClient(AUTH_ID, SECRET_KEY, base_url=server.url) as client:
            await client.wallets.info("warm-up")  # imports, pool, decoders: all in place
            before = _peak_rss_mb()
            state["reply"] = reply
            error = None
            try:
                await client.wallets.info("bomb")
            except FreedomPayError as exc:
                error = type(exc).__name__
            after = _peak_rss_mb()
            sent = len(server.requests) - 1
    return {
        "kind": kind,
        "encoding": encoding,
        "inflated_mb": megabytes,
        "wire_kb": len(payload) // 1024,
        "peak_rss_before_mb": round(before, 1),
        "peak_rss_after_mb": round(after, 1),
        "added_mb": round(after - before, 1),
        "error": error,
        "requests_sent": sent,
    }


async def _deadline() -> dict[str, object]:
    """Seconds a read with ``timeout=5`` takes against 429 + ``Retry-After: 999999``."""
    import time

    from freedompay_async import FreedomPayClient, FreedomPayError

    reply = respond(b"slow down", status=429, headers={"Retry-After": "999999"})
    async with HostileServer(reply) as server:
        async with FreedomPayClient(AUTH_ID, SECRET_KEY, base_url=server.url, timeout=5) as client:
            started = time.monotonic()
            try:
                await client.wallets.info("user-1")
            except FreedomPayError as exc:
                error = type(exc).__name__
            return {"seconds": round(time.monotonic() - started, 2), "error": error}


async def _outcomes() -> dict[str, str]:
    """What a call ends in for a few hostile 200 replies (the class that leaves the call)."""
    from freedompay_async import FreedomPayClient

    wallet = '"wallet":{"wallet_id":"3f1c7c1e-7a4b-4c1e-9d3e-2b5c6a7d8e9f","currency":"KZT"'
    cases = {
        "info, JSON 100,000 deep": b'{"status":"ok","request_status":"0","dt":"2024-01-01T00:00:00Z","x":'
        + deep_json(100_000)
        + b"}",
        "balance, 5,000-digit int": b'{"status":"ok","request_status":"0","dt":"2024-01-01T00:00:00Z","x":'
        + b"7" * 5000
        + b"}",
        "info, balance NaN": f'{{"status":"ok","request_status":"0","dt":"2024-01-01T00:00:00Z",{wallet},"balance":"NaN"}}}}'.encode(),
        "info, balance 1E+999999999": f'{{"status":"ok","request_status":"0","dt":"2024-01-01T00:00:00Z",{wallet},"balance":1E+999999999}}}}'.encode(),
    }
    outcomes: dict[str, str] = {}
    for name, body in cases.items():
        async with HostileServer(respond(body)) as server:
            async with FreedomPayClient(
                AUTH_ID, SECRET_KEY, base_url=server.url, max_retries=0
            ) as client:
                call = client.wallets.info if name.startswith("info") else client.wallets.balance
                try:
                    result = await call("user-1")
                    outcomes[name] = f"returned {type(result).__name__}"
                except BaseException as exc:
                    outcomes[name] = f"raised {type(exc).__module__}.{type(exc).__name__}"
    return outcomes


def main(argv: list[str]) -> None:
    if argv[0] == "deadline":
        print(json.dumps(asyncio.run(_deadline())))
        return
    if argv[0] == "outcomes":
        print(json.dumps(asyncio.run(_outcomes()), indent=1))
        return
    kind, encoding, megabytes = argv[0], argv[1], int(argv[2])
    print(json.dumps(asyncio.run(_measure(kind, encoding, megabytes))))


if __name__ == "__main__":
    main(sys.argv[1:])
