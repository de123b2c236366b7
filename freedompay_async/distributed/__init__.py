"""Poll more wallets than one machine can: shards on a Redis stream.

Needs the ``redis`` extra: ``pip install "freedompay-async[redis]"`` (redis-py).

::

    ids file / generator
          |
          v
     Producer --- shards of 1000 ids ---> Redis stream {ns}:shards (consumer group {ns}:workers)
        ^                                      |            |            |
        |                                      v            v            v
        |                                   worker 1     worker 2  ...  worker N
        |                                   (one FreedomPayClient per process,
        |                                    info_many over each shard)
        |                                      |            |            |
        |                                      v            v            v
        +------ rows, shard by shard ----- Redis stream {ns}:run:{id}:results (the sink)

- **Producer** (:class:`Producer`, or ``freedompay-async poll --distributed URL IDS_FILE``)
  reads identifiers lazily, queues them in shards, keeps at most ``window`` shards outstanding
  (memory stays flat for any input size), and yields every row as shards come back.
- **Workers** (:func:`run_worker`, or ``freedompay-async worker URL``) take shards from the
  queue, poll them with one long-lived client per process, store each shard's rows in the
  sink and only then acknowledge the message.
- **Nothing lost, nothing twice.** A worker that is killed stops renewing the lease on its
  shard; after :attr:`QueueConfig.lease` seconds an idle worker takes the shard over. A shard
  that fails, or is cancelled when a worker stops, is put back on the queue at once. A shard's
  rows are stored by the first worker to finish it, atomically, and never again (see
  :mod:`freedompay_async.distributed._sink`), so the producer's report has every identifier of
  the input exactly once.
"""

from __future__ import annotations

try:
    import redis as _redis  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'freedompay_async.distributed needs the redis extra: pip install "freedompay-async[redis]"'
    ) from exc

from .._rows import Row
from ._keys import DEFAULT_LEASE, DEFAULT_NAMESPACE, QueueConfig
from ._patience import DEFAULT_REDIS_TIMEOUT, RedisUnavailableError
from ._producer import (
    DEFAULT_HEARTBEAT,
    DEFAULT_SHARD_SIZE,
    DEFAULT_WINDOW,
    NoWorkerCanAuthenticateError,
    Producer,
    Run,
    RunStats,
)
from ._worker import DEFAULT_GRACE, TASK_NAME, WorkerAuthenticationError, WorkerStats, run_worker

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_LEASE",
    "DEFAULT_NAMESPACE",
    "DEFAULT_REDIS_TIMEOUT",
    "DEFAULT_SHARD_SIZE",
    "DEFAULT_WINDOW",
    "NoWorkerCanAuthenticateError",
    "TASK_NAME",
    "Producer",
    "QueueConfig",
    "RedisUnavailableError",
    "Row",
    "Run",
    "RunStats",
    "WorkerAuthenticationError",
    "WorkerStats",
    "run_worker",
]
