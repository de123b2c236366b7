"""The client of ``info``, ``poll`` and ``worker``: credentials and host from the options or
the environment."""

from __future__ import annotations

import argparse
import os

from .. import _config
from .._client import FreedomPayClient
from ._exit import UsageError


def client_from(args: argparse.Namespace) -> FreedomPayClient:
    auth_id = args.auth_id or os.environ.get(_config.ENV_AUTH_ID)
    secret_key = args.secret_key or os.environ.get(_config.ENV_SECRET_KEY)
    if not auth_id:
        raise UsageError(f"no auth id: pass --auth-id or set {_config.ENV_AUTH_ID}")
    if not secret_key:
        raise UsageError(f"no secret key: set {_config.ENV_SECRET_KEY} (or pass --secret-key)")
    try:
        return FreedomPayClient(
            auth_id=auth_id,
            secret_key=secret_key,
            base_url=args.base_url,
            region=args.region,
            timeout=args.timeout,
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
