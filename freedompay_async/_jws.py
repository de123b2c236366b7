"""``X-JWS-Signature``: HMAC JWS with a detached payload. Pure functions, no I/O.

The header value is ``b64(protected) + ".." + b64(HMAC(secret, b64(protected) + "." + b64(body)))``
where ``b64`` is base64url without padding and ``protected`` is the JSON object
``{"uri", "auth_id", "method", "params", "alg"}`` in that order. The body is never re-serialised:
whatever bytes are sent are the bytes signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Final

import msgspec

_DIGESTS: Final[dict[str, str]] = {"HS256": "sha256", "HS512": "sha512"}
ALGORITHMS: Final = tuple(_DIGESTS)

_B64URL_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# RFC 2104 pads as translation tables (what hmac.py does for its pure-Python path).
_IPAD: Final = bytes(x ^ 0x36 for x in range(256))
_OPAD: Final = bytes(x ^ 0x5C for x in range(256))


def b64url(data: bytes) -> bytes:
    """Base64url without padding, as JWS wants it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(data: bytes | str) -> bytes:
    """Inverse of :func:`b64url`; raises :class:`ValueError` on malformed input."""
    raw = data.encode("ascii") if isinstance(data, str) else data
    if raw.strip(_B64URL_ALPHABET) or len(raw) % 4 == 1:
        raise ValueError("not base64url without padding")
    raw = raw.replace(b"-", b"+").replace(b"_", b"/")
    return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4))


def digest_name(alg: str) -> str:
    """The :mod:`hashlib` name behind a JWS ``alg``; :class:`ValueError` for anything else."""
    try:
        return _DIGESTS[alg]
    except KeyError:
        raise ValueError(f"unsupported JWS alg {alg!r}; expected one of {ALGORITHMS}") from None


def protected_header(uri: str, auth_id: str, alg: str = "HS256") -> bytes:
    """The protected header JSON, keys in the documented order, no whitespace."""
    digest_name(alg)
    return msgspec.json.encode(
        {"uri": uri, "auth_id": auth_id, "method": "POST", "params": "", "alg": alg}
    )


class Signer:
    """Signs request bodies for one path, with the constant header part encoded once.

    >>> signer = Signer(uri="/v5/partner/wallet/info", auth_id="123456", secret_key=b"k")
    >>> signer.sign(b'{"identifier":"user-42"}').count(".")
    2
    """

    __slots__ = ("_inner", "_outer", "_prefix", "alg", "uri")

    def __init__(self, *, uri: str, auth_id: str, secret_key: bytes, alg: str = "HS256") -> None:
        self.uri = uri
        self.alg = alg
        new = getattr(hashlib, digest_name(alg))
        block_size = new().block_size
        key = secret_key if len(secret_key) <= block_size else new(secret_key).digest()
        key = key.ljust(block_size, b"\0")
        encoded_header = b64url(protected_header(uri, auth_id, alg))
        # HMAC(key, m) = H(key^opad || H(key^ipad || m)). The inner hash has already absorbed the
        # constant "<header>." prefix; each signature copies the two states and adds the body.
        self._inner = new(key.translate(_IPAD))
        self._inner.update(encoded_header + b".")
        self._outer = new(key.translate(_OPAD))
        self._prefix = encoded_header.decode("ascii") + ".."

    def __repr__(self) -> str:  # the key never appears
        return f"Signer(uri={self.uri!r}, alg={self.alg!r})"

    def sign(self, body: bytes) -> str:
        """The ``X-JWS-Signature`` header value for exactly these body bytes."""
        inner = self._inner.copy()
        inner.update(b64url(body))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return self._prefix + b64url(outer.digest()).decode("ascii")


def sign(
    body: bytes, *, uri: str, auth_id: str, secret_key: str | bytes, alg: str = "HS256"
) -> str:
    """One-off signature of ``body`` (see :class:`Signer` to sign many bodies for one path)."""
    key = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
    return Signer(uri=uri, auth_id=auth_id, secret_key=key, alg=alg).sign(body)


class SignatureError(ValueError):
    """A signature that does not verify; the message never contains the expected value."""


def verify(
    header_value: str,
    body: bytes,
    *,
    secret_key: str | bytes,
    auth_ids: frozenset[str] | None = None,
) -> dict[str, str]:
    """Check ``header_value`` against ``body`` the way the server does; return the protected header.

    Raises :class:`SignatureError` when the value is malformed, uses an unknown ``alg`` or
    ``auth_id``, or the MAC does not match.
    """
    encoded_header, sep, encoded_mac = header_value.partition("..")
    if not sep or not encoded_header or not encoded_mac or "." in encoded_mac:
        raise SignatureError("X-JWS-Signature is not of the form header..signature")
    try:
        header = msgspec.json.decode(b64url_decode(encoded_header), type=dict[str, str])
        mac = b64url_decode(encoded_mac)
    except (ValueError, msgspec.DecodeError):
        raise SignatureError("X-JWS-Signature is not valid base64url JSON") from None
    alg = header.get("alg", "")
    if alg not in _DIGESTS:
        raise SignatureError(f"unsupported alg {alg!r}")
    if auth_ids is not None and header.get("auth_id") not in auth_ids:
        raise SignatureError("unknown auth_id")
    key = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
    signing_input = encoded_header.encode("ascii") + b"." + b64url(body)
    expected = hmac.digest(key, signing_input, _DIGESTS[alg])
    if not hmac.compare_digest(expected, mac):
        raise SignatureError("signature does not match the body")
    return header
