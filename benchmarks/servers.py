"""The loopback servers the contenders talk to, each in its own process, always stopped.

* :class:`NginxServer`: our own nginx master (``nginx-light``) from a generated config in a temp
  dir, on ``127.0.0.1`` and a free port, answering every POST with the canned Info body
  (``return 200``); with ``latency`` it uses the echo module (``echo_sleep``) instead.
* :class:`FakeServer`: ``FakeFreedomPay`` in a separate Python process (so the server does not
  share the client's GIL), used when nginx is missing or when asked for. It verifies every
  signature, so it costs far more per request than nginx does.

Both are context managers that stop the process they started even on error or Ctrl-C, and ask
the kernel to kill it should this process die first (``PR_SET_PDEATHSIG``, Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from .common import LOOPBACK, canned_info_body, child_env, python

#: Wallets the fake server is seeded with (the ids sent wrap around this many).
FAKE_WALLETS: Final = 1000
#: Where Debian's ``libnginx-mod-http-echo`` (pulled in by ``nginx-light``) puts the module.
ECHO_MODULE_PATHS: Final = (
    Path("/usr/lib/nginx/modules/ngx_http_echo_module.so"),
    Path("/usr/share/nginx/modules/ngx_http_echo_module.so"),
)
_START_TIMEOUT: Final = 15.0


class ServerError(RuntimeError):
    """A server could not be started."""


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """What the report says about the server a figure was measured against."""

    kind: str  # "nginx" or "fake"
    url: str
    latency: float
    description: str
    #: ids must wrap around this many wallets (fake server); 0 = any id is answered.
    modulo: int


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (str(p) for p in (Path("/usr/sbin/nginx"),) if p.exists()), None
    )


def echo_module() -> Path | None:
    return next((path for path in ECHO_MODULE_PATHS if path.exists()), None)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(args: list[str], **options: object) -> subprocess.Popen[bytes]:
    """Start a child in its own session (Ctrl-C is ours to handle) that dies with us."""
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    return subprocess.Popen(args, start_new_session=True, preexec_fn=preexec, **options)  # type: ignore[call-overload, no-any-return]


def stop(process: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
    """Terminate ``process`` (SIGTERM, then SIGKILL after ``grace`` seconds) and reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the caller retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((LOOPBACK, port)) == 0:
                return True
        time.sleep(0.02)
    return False


def _nginx_string(text: str) -> str:
    """A single-quoted nginx config string (the JSON body has no quote of that kind)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def nginx_config(
    directory: Path, port: int, body: bytes, latency: float, module: Path | None
) -> str:
    canned = _nginx_string(body.decode("utf-8"))
    if latency:
        if module is None:
            raise ServerError("nginx latency needs the echo module (libnginx-mod-http-echo)")
        reply = f"echo_sleep {latency:g};\n            echo -n {canned};"
    else:
        reply = f"return 200 {canned};"
    load = f"load_module {module};\n" if latency and module else ""
    temp = "\n".join(
        f"    {name}_temp_path {directory / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# generated by python -m benchmarks: one worker, loopback only, no logs
{load}daemon off;
master_process on;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
{temp}
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server_tokens off;
    server {{
        listen {LOOPBACK}:{port} backlog=4096;
        location / {{
            default_type application/json;
            {reply}
        }}
    }}
}}
"""


class NginxServer:
    """Our own nginx master on 127.0.0.1:<free port> answering every POST with ``body``."""

    def __init__(self, body: bytes, *, latency: float = 0.0, binary: str | None = None) -> None:
        self._binary = binary or nginx_binary()
        if self._binary is None:
            raise ServerError("nginx is not installed (apt-get install -y nginx-light)")
        self._body = body
        self._latency = latency
        self._module = echo_module()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="freedompay-bench-nginx-")
        directory = Path(self._tmp.name)
        directory.chmod(0o755)  # workers drop root privileges and must still reach it
        last_error = ""
        for _attempt in range(5):
            port = free_port()
            conf = directory / "nginx.conf"
            conf.write_text(nginx_config(directory, port, self._body, self._latency, self._module))
            assert self._binary is not None
            stderr_log = directory / "stderr.log"
            with stderr_log.open("wb") as stderr:
                process = spawn(
                    [self._binary, "-p", str(directory), "-c", str(conf), "-e", str(stderr_log)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
            if wait_listening(port, process, _START_TIMEOUT):
                self._process, self.port = process, port
                return
            stop(process)
            last_error = "".join(
                log.read_text(errors="replace")[-1000:]
                for log in (stderr_log, directory / "error.log")
                if log.exists()
            )
        self.stop()
        raise ServerError(f"nginx did not start: {last_error.strip() or 'no error log'}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop(process)
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            tmp.cleanup()

    def __enter__(self) -> NginxServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class FakeServer:
    """``FakeFreedomPay`` in a child Python process (see ``benchmarks/fakeserver.py``)."""

    def __init__(self, *, latency: float = 0.0, wallets: int = FAKE_WALLETS) -> None:
        self._latency = latency
        self._wallets = wallets
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.url = ""
        self.loop = ""

    def start(self) -> None:
        # Its stderr goes to a file: wrk closing sockets mid-request makes aiohttp log tracebacks
        # ("Connection lost") that are expected and would bury the harness's own output.
        self._log = tempfile.TemporaryFile(prefix="freedompay-bench-fake-")  # noqa: SIM115 (closed in stop)
        process = spawn(
            [
                python(),
                "-m",
                "benchmarks.fakeserver",
                "--latency",
                repr(self._latency),
                "--wallets",
                str(self._wallets),
            ],
            stdin=subprocess.PIPE,  # closing it (or our death) stops the server
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=child_env(),
        )
        self._process = process
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.startswith("http://"):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
            stderr = self._stderr
            self.stop()
            raise ServerError(f"the fake server did not start (said {line!r}): {stderr}")
        self.url, _, self.loop = line.partition(" ")

    @property
    def _stderr(self) -> str:
        log = self._log
        if log is None or log.closed:
            return ""
        log.seek(0)
        return log.read().decode(errors="replace")[-1500:]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(2)
            stop(process)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> FakeServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def serve(kind: str, *, latency: float = 0.0) -> Iterator[ServerInfo]:
    """Start the server asked for (``auto``: nginx when installed, else the fake), yield its info.

    ``auto`` falls back to the fake server (``FakeFreedomPay``, with ``latency=`` for a latency
    run) when nginx is missing, lacks the echo module a latency run needs, or does not start;
    the description says which server answered and why.
    """
    if kind not in ("auto", "nginx", "fake"):
        raise ValueError(f"unknown server kind {kind!r}")
    reasons: list[str] = []
    if kind in ("auto", "nginx"):
        binary = nginx_binary()
        if binary is None:
            reasons.append("nginx not installed")
        elif latency and echo_module() is None:
            reasons.append("nginx echo module missing (echo_sleep)")
        else:
            nginx = NginxServer(canned_info_body(), latency=latency, binary=binary)
            try:
                nginx.start()
            except ServerError as exc:
                if kind == "nginx":
                    raise
                reasons.append(str(exc).splitlines()[0][:200])
            else:
                how = f"echo_sleep {latency * 1000:g} ms" if latency else "return 200"
                try:
                    yield ServerInfo(
                        kind="nginx",
                        url=nginx.url,
                        latency=latency,
                        description=f"nginx ({how}, 1 worker, canned Info body) on {nginx.url}",
                        modulo=0,
                    )
                finally:
                    nginx.stop()
                return
        if kind == "nginx":
            raise ServerError("; ".join(reasons))
    with FakeServer(latency=latency) as fake:
        why = f" (fallback: {'; '.join(reasons)})" if reasons else ""
        extra = f", latency {latency * 1000:g} ms" if latency else ""
        yield ServerInfo(
            kind="fake",
            url=fake.url,
            latency=latency,
            description=(
                f"FakeFreedomPay in its own process ({fake.loop} loop, verifies every signature"
                f"{extra}) on {fake.url}{why}"
            ),
            modulo=FAKE_WALLETS,
        )
