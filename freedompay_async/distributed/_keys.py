"""Where everything lives in Redis, and the settings producer and workers must agree on.

One place for key names, so that a deployment can read (or clean) them by hand::

    {namespace}:shards                 stream: shard messages, consumer group {namespace}:workers
    {namespace}:workers                sorted set: live workers, scored by when they count as gone
    {namespace}:run:{run}              string: the run is live; expires when its producer has been
                                       silent for 3 heartbeats (value: the TTL of the keys below, ms)
    {namespace}:run:{run}:results      stream: one entry per finished shard (its rows)
    {namespace}:run:{run}:done         hash: shard -> "ok failed", written once, with the results
    {namespace}:run:{run}:attempts     hash: shard -> times a worker started it
    {namespace}:run:{run}:auth         hash: worker -> why it cannot authenticate
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .._validate import check_number, invalid, wrong_type

__all__ = ["DEFAULT_LEASE", "DEFAULT_NAMESPACE", "Keys", "QueueConfig"]

#: Key prefix unless ``namespace=`` says otherwise.
DEFAULT_NAMESPACE: Final = "freedompay"
#: Seconds a shard stays with a worker that stopped renewing it (killed, frozen, cut off)
#: before another worker takes it over. Live workers renew every third of this.
DEFAULT_LEASE: Final = 30.0
#: The shortest lease accepted (renewals every lease/3 need some slack).
MIN_LEASE: Final = 0.3

_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_RUN = re.compile(r"[A-Za-z0-9_\-]{1,64}")


@dataclass(frozen=True)
class QueueConfig:
    """How producer and workers find each other: a Redis URL, a key namespace and the lease.

    Producer and workers of one deployment must use the same ``namespace``; the lease is read
    by the workers (how long a shard of a dead worker waits before it is redelivered).
    """

    url: str
    namespace: str = DEFAULT_NAMESPACE
    lease: float = DEFAULT_LEASE

    def __post_init__(self) -> None:
        if not isinstance(self.url, str):
            wrong_type("url", "a redis://, rediss:// or unix:// URL", self.url)
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            invalid("url must be a redis://, rediss:// or unix:// URL")
        if not isinstance(self.namespace, str):
            wrong_type("namespace", "a str", self.namespace)
        if not _NAMESPACE.fullmatch(self.namespace):
            invalid("namespace must be 1-64 characters of letters, digits, '_', '-' and '.'")
        check_number(self.lease, "lease", MIN_LEASE, 86_400, "a number of seconds")

    @property
    def keys(self) -> Keys:
        return Keys(self.namespace)

    def __repr__(self) -> str:
        # A Redis URL may carry a password: never show it.
        return (
            f"QueueConfig(url={redact_url(self.url)!r}, namespace={self.namespace!r}, "
            f"lease={self.lease!r})"
        )


@dataclass(frozen=True)
class Keys:
    namespace: str

    @property
    def shards(self) -> str:
        return f"{self.namespace}:shards"

    @property
    def group(self) -> str:
        return f"{self.namespace}:workers"

    @property
    def workers(self) -> str:
        return f"{self.namespace}:workers"

    def run(self, run: str) -> str:
        return f"{self.namespace}:run:{run}"

    def results(self, run: str) -> str:
        return f"{self.namespace}:run:{run}:results"

    def done(self, run: str) -> str:
        return f"{self.namespace}:run:{run}:done"

    def attempts(self, run: str) -> str:
        return f"{self.namespace}:run:{run}:attempts"

    def auth(self, run: str) -> str:
        return f"{self.namespace}:run:{run}:auth"

    def of_run(self, run: str) -> tuple[str, str, str, str, str]:
        """Every key of one run (for expiry and clean-up), the run's own key first."""
        return (
            self.run(run),
            self.results(run),
            self.done(run),
            self.attempts(run),
            self.auth(run),
        )


def check_run_id(run: str) -> str:
    if not isinstance(run, str):
        wrong_type("run id", "a str", run)
    if not _RUN.fullmatch(run):
        invalid("run id must be 1-64 characters of letters, digits, '_' and '-'")
    return run


def redact_url(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``: URLs go into logs and errors."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}:***@{host}" if colon else f"{scheme}://***@{host}"
