"""User-facing groups of operations, hung off the client (``client.wallets``)."""

from .wallets import Wallets

__all__ = ["Wallets"]
