"""A throwaway ``redis-server`` on a free loopback port, for tests of the distributed poll."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Final

__all__ = ["RedisServer"]

_START_TIMEOUT: Final = 10.0


class RedisServer:
    """Start ``redis-server`` (the Debian package ``redis-server``) on ``127.0.0.1``, in a
    temporary directory; stop it on exit::

        with RedisServer() as redis:
            config = QueueConfig(redis.url)

    No persistence unless ``appendonly=True`` (an append-only file, kept across
    :meth:`restart`). Raises ``FileNotFoundError`` if ``redis-server`` is not installed.
    """

    def __init__(self, executable: str | None = None, *, appendonly: bool = False) -> None:
        self.appendonly = appendonly
        found = executable or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.executable = found
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        if self._process is None:
            raise RuntimeError("the server is not running")
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def restart(self, *, down: float = 0.0) -> None:
        """Stop the server (SIGTERM), wait ``down`` seconds and start it again on the same
        port: empty, or from its append-only file with ``appendonly=True`` (to test clients
        that must survive a Redis restart)."""
        port = self.port
        if self.appendonly:
            self._terminate()
        else:
            self.stop()
        time.sleep(down)
        self.start(port=port)

    def start(self, *, port: int | None = None) -> None:
        if self._process is not None:
            raise RuntimeError("already running")
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="freedompay-redis-")
        for _attempt in range(5):  # the free port may be taken between probe and bind
            self.port = port or _free_port()
            options = {"bind": "127.0.0.1", "port": str(self.port), "save": ""}
            options.update(
                appendonly="yes" if self.appendonly else "no",
                dir=self._dir.name,
                loglevel="warning",
            )
            argv = [self.executable]
            for name, value in options.items():
                argv += [f"--{name}", value]
            self._process = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return
            self._terminate()
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self._terminate()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def __repr__(self) -> str:
        state = f"port={self.port}" if self._process is not None else "stopped"
        return f"<RedisServer {state} pid={os.getpid()}>"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
