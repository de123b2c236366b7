"""The fake server's memory and rules: wallets, their operations, and every request it was sent.

Pure (no I/O, no clock other than ``dt`` stamps): each endpoint is a method taking the decoded
JSON body and returning the reply object, so the rules read like the spec and are easy to test.
See :class:`FakeLedger` for the rules.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Final

import msgspec

from .._protocol import ENDPOINTS
from .._validate import check_aware, check_choice, check_int, invalid, wrong_type
from ..models import AwareDatetime, WalletStatus

_NAMESPACE: Final = uuid.UUID("5b1c7a3e-2f4d-4c1e-9a59-0f7b7d6c1e42")
_ALPHA3: Final = re.compile(r"[A-Z]{3}\Z")

Reply = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def ok_reply(request_status: str = "0", **fields: Any) -> Reply:
    """A ``status: "ok"`` envelope with extra fields."""
    return {"status": "ok", "request_status": request_status, **fields, "dt": now_rfc3339()}


def error_reply(code: str, description: str, request_status: str = "2") -> Reply:
    """A ``status: "error"`` envelope."""
    return {
        "status": "error",
        "request_status": request_status,
        "error_code": code,
        "error_description": description,
        "dt": now_rfc3339(),
    }


def money(value: object, name: str = "amount") -> Decimal:
    """A seeded amount as ``Decimal``, from a ``Decimal``, ``str`` or ``int`` (never ``float``)."""
    if isinstance(value, float) or not isinstance(value, (Decimal, str, int)):
        wrong_type(name, "a Decimal, str or int", value)
    return Decimal(value)


@dataclasses.dataclass
class FakeOperation:
    """One statement line of a fake wallet. ``currency`` defaults to the wallet's."""

    type: str
    amount: Decimal
    datetime: datetime
    commission: Decimal = Decimal("0")
    currency: str | None = None
    rrn: str = ""
    correspondent_name: str = ""
    correspondent_account: str = ""

    def __post_init__(self) -> None:
        check_aware(self.datetime, "FakeOperation.datetime")
        self.amount = money(self.amount, "amount")
        self.commission = money(self.commission, "commission")

    def to_wire(self, wallet_currency: str) -> Reply:
        """The operation as Statement returns it (amounts as JSON numbers, like the docs)."""
        return {
            "type": self.type,
            "amount": self.amount,
            "commission": self.commission,
            "currency": self.currency or wallet_currency,
            "datetime": self.datetime,
            "rrn": self.rrn,
            "correspondent": {
                "name": self.correspondent_name,
                "account_number": self.correspondent_account,
            },
        }


@dataclasses.dataclass
class FakeWallet:
    """One wallet held by the fake server; tests may read and change it freely."""

    identifier: str
    currency: str = "KZT"
    balance: Decimal = Decimal("0.00")
    status: str = WalletStatus.ACTIVE.value
    wallet_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    owner_id: str = ""
    account_number: str = ""
    country: str = "KAZ"
    #: Statement lines, in any order (Statement sorts them by time).
    operations: list[FakeOperation] = dataclasses.field(default_factory=list)
    #: The reason given by the last block / close.
    description: str = ""
    #: Owner fields received through owner identification.
    owner: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_wire(self) -> Reply:
        """The ``wallet`` object as Info returns it (``balance`` as a decimal string)."""
        return {
            "wallet_id": str(self.wallet_id),
            "identifiers": [{"value": self.identifier}],
            "owner_id": self.owner_id,
            "account_number": self.account_number,
            "currency": self.currency,
            "balance": str(self.balance),
            "status": self.status,
        }


def seeded_wallet(index: int, currency: str = "KZT") -> FakeWallet:
    """The deterministic wallet ``user-<index>`` that ``wallets=N`` creates."""
    identifier = f"user-{index}"
    return FakeWallet(
        identifier=identifier,
        currency=currency,
        balance=Decimal(f"{(index * 7919) % 1_000_000}.{index % 100:02d}"),
        wallet_id=uuid.uuid5(_NAMESPACE, identifier),
        owner_id=f"owner-{index}",
        account_number=f"KZ{index:018d}",
    )


class RequestState(str, enum.Enum):
    """Where a mutation the fake received stands."""

    PROCESSING = "processing"
    SUCCESS = "success"
    ERROR = "error"

    @property
    def wire(self) -> str:
        """The E-Money spelling of ``request_status``."""
        return {"processing": "1", "success": "0", "error": "2"}[self.value]


@dataclasses.dataclass
class FakeRequest:
    """A mutation the fake accepted (its ``request_id`` is now taken), and its outcome."""

    request_id: uuid.UUID
    operation: str
    payload: Reply
    state: RequestState = RequestState.PROCESSING
    #: Request status polls still needed to finish (``None``: only ``complete()`` finishes it).
    polls_left: int | None = None
    #: Request status polls answered so far.
    polls: int = 0
    error_code: str | None = None
    error_description: str | None = None
    #: Fields the finished operation adds to its replies (Add: ``wallet``).
    result: Reply = dataclasses.field(default_factory=dict)
    #: How many times it was carried out (a resend refused with 1002 is not).
    executions: int = 0

    @property
    def finished(self) -> bool:
        return self.state is not RequestState.PROCESSING


@dataclasses.dataclass
class _Deferral:
    operation: str | None
    request_id: uuid.UUID | None
    polls: int | None
    times: int


class _Refusal(Exception):
    """A business rule said no: becomes an error reply (or a failed request's outcome)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


Outcome = Reply  # fields the operation adds to its reply
Apply = Callable[["FakeLedger", Reply], Outcome]


class FakeLedger:
    """State and rules of the fake E-Money API.

    Reads:

    - **info / balance**: 1004 for an unknown identifier; work for blocked and closed wallets
      too (they show ``status``). Balance answers ``{"balance": "<decimal>", "currency": ...}``
      at the top level (the real shape is unverified).
    - **statement**: the wallet's operations with ``start_date <= datetime <= end_date``
      (either bound optional), oldest first; amounts as JSON numbers. 1001 for a bound that is
      not RFC 3339 with an offset, or ``start_date`` after ``end_date``.
    - **request status**: 1006 for an unknown ``request_id``; otherwise ``status: "ok"`` with
      the operation's ``request_status`` (``1`` processing, ``0`` done, ``2`` failed, with the
      failure's ``error_code`` / ``error_description``) and what it produced (Add: ``wallet``).

    Mutations (add, block, close, identify_owner) check, in order: a ``request_id`` that is a
    UUID (else 1001), not used before (else **1002**, whatever the first one's outcome), the
    other fields (else 1001; such a request is not recorded). The request is then recorded and
    carried out at once, or, if deferred (:meth:`defer`), answered ``request_status`` = ``1``
    and carried out later: after N Request status polls, or on :meth:`complete`. The rules
    below apply when it is carried out, so a deferred operation can still fail:

    - **add**: **1003** if the identifier exists (closed wallets keep theirs). Without an
      identifier the new wallet is known by its ``wallet_id`` string. A new wallet is active,
      with balance 0.
    - **block**: 1004 unknown; **1007** closed; **1008** already blocked.
    - **close**: 1004 unknown; **1007** already closed; **1005** when the balance is not zero
      (money must leave a wallet before it closes). A blocked wallet can be closed.
    - **identify_owner**: 1004 unknown; **1007** closed; stores the owner fields and gives the
      wallet an ``owner_id`` if it had none. Blocked wallets can be identified.

    Blocked wallets therefore stay readable, cannot be blocked again, and can be closed.
    """

    def __init__(self) -> None:
        self.wallets: dict[str, FakeWallet] = {}
        self.requests: dict[uuid.UUID, FakeRequest] = {}
        self._deferrals: list[_Deferral] = []
        self._accounts = 0

    # -- test helpers -------------------------------------------------------------------------

    def defer(
        self,
        operation: str | None = None,
        *,
        request_id: uuid.UUID | str | None = None,
        polls: int | None = 1,
        times: int = 1,
    ) -> None:
        """Make mutations answer "processing" first and finish later (see FakeFreedomPay)."""
        if (operation is None) == (request_id is None):
            invalid("pass an operation name or a request_id, not both")
        if operation is not None:
            check_choice(operation, "operation", _MUTATIONS)
        if polls is not None:
            check_int(polls, "polls (None: finish only on complete())", 1)
        check_int(times, "times", 1)
        rid = None if request_id is None else uuid.UUID(str(request_id))
        self._deferrals.append(_Deferral(operation, rid, polls, 1 if rid else times))

    def complete(self, request_id: uuid.UUID | str) -> FakeRequest:
        """Carry out a deferred operation now; return its record."""
        request = self.requests.get(uuid.UUID(str(request_id)))
        if request is None:
            raise KeyError(f"the fake has no request {request_id}")
        if request.finished:
            raise ValueError(f"request {request_id} already finished ({request.state.value})")
        self._carry_out(request)
        return request

    @property
    def pending(self) -> list[uuid.UUID]:
        """``request_id`` of every operation still processing."""
        return [rid for rid, request in self.requests.items() if not request.finished]

    def new_account_number(self) -> str:
        self._accounts += 1
        return f"KZ99{self._accounts:016d}"

    # -- reads --------------------------------------------------------------------------------

    def info(self, payload: Reply) -> Reply:
        wallet = self._wallet(payload)
        return ok_reply(wallet=wallet.to_wire())

    def balance(self, payload: Reply) -> Reply:
        wallet = self._wallet(payload)
        return ok_reply(balance=str(wallet.balance), currency=wallet.currency)

    def statement(self, payload: Reply) -> Reply:
        wallet = self._wallet(payload)
        start = _optional_datetime(payload, "start_date")
        end = _optional_datetime(payload, "end_date")
        if start is not None and end is not None and start > end:
            raise _Refusal("1001", "start_date is after end_date")
        lines = sorted(
            (
                op
                for op in wallet.operations
                if (start is None or op.datetime >= start) and (end is None or op.datetime <= end)
            ),
            key=lambda op: op.datetime,
        )
        return ok_reply(operations=[op.to_wire(wallet.currency) for op in lines])

    def request_status(self, payload: Reply) -> Reply:
        rid = _uuid(payload, "request_id")
        request = self.requests.get(rid)
        if request is None:
            raise _Refusal("1006", "no request with this request_id")
        if not request.finished:
            request.polls += 1
            if request.polls_left is not None:
                request.polls_left -= 1
                if request.polls_left <= 0:
                    self._carry_out(request)
        reply = ok_reply(request.state.wire, request_id=str(rid), **request.result)
        if request.state is RequestState.ERROR:
            reply["error_code"] = request.error_code
            reply["error_description"] = request.error_description
        return reply

    # -- mutations ----------------------------------------------------------------------------

    def add(self, payload: Reply) -> Reply:
        return self._mutation("add", payload)

    def block(self, payload: Reply) -> Reply:
        return self._mutation("block", payload)

    def close(self, payload: Reply) -> Reply:
        return self._mutation("close", payload)

    def identify_owner(self, payload: Reply) -> Reply:
        return self._mutation("identify_owner", payload)

    def handle(self, operation: str, payload: Reply) -> Reply:
        """Answer one request to ``operation`` (an endpoint name) with the rules above."""
        try:
            result: Reply = getattr(self, operation)(payload)
        except _Refusal as refusal:
            return error_reply(refusal.code, refusal.description)
        return result

    def _mutation(self, operation: str, payload: Reply) -> Reply:
        rid = _uuid(payload, "request_id")
        if rid in self.requests:
            raise _Refusal("1002", "request_id was already used")
        _MUTATIONS[operation][0](payload)  # 1001 before anything is recorded
        request = self.requests[rid] = FakeRequest(rid, operation, payload)
        deferral = self._take_deferral(operation, rid)
        if deferral is not None:
            request.polls_left = deferral.polls
            return ok_reply(RequestState.PROCESSING.wire)
        self._carry_out(request)
        if request.state is RequestState.ERROR:
            assert request.error_code is not None and request.error_description is not None
            raise _Refusal(request.error_code, request.error_description)
        return ok_reply(RequestState.SUCCESS.wire, **request.result)

    def _take_deferral(self, operation: str, rid: uuid.UUID) -> _Deferral | None:
        for deferral in self._deferrals:
            if deferral.request_id == rid or (
                deferral.request_id is None and deferral.operation == operation
            ):
                deferral.times -= 1
                if deferral.times == 0:
                    self._deferrals.remove(deferral)
                return deferral
        return None

    def _carry_out(self, request: FakeRequest) -> None:
        request.executions += 1
        try:
            request.result = _MUTATIONS[request.operation][1](self, request.payload)
        except _Refusal as refusal:
            request.state = RequestState.ERROR
            request.error_code = refusal.code
            request.error_description = refusal.description
        else:
            request.state = RequestState.SUCCESS

    def _wallet(self, payload: Reply) -> FakeWallet:
        identifier = _text(payload, "identifier")
        wallet = self.wallets.get(identifier)
        if wallet is None:
            raise _Refusal("1004", "wallet not found")
        return wallet


# -- mutation rules: (check fields -> 1001, carry out -> outcome or refusal) -------------------


def _check_add(payload: Reply) -> None:
    if payload.get("identifier") is not None:
        _text(payload, "identifier")
    for name in ("country", "currency"):
        value = payload.get(name)
        if not isinstance(value, str) or not _ALPHA3.match(value):
            raise _Refusal("1001", f"{name} must be 3 uppercase letters")


def _apply_add(ledger: FakeLedger, payload: Reply) -> Outcome:
    identifier = payload.get("identifier")
    if identifier is not None and identifier in ledger.wallets:
        raise _Refusal("1003", "a wallet with this identifier already exists")
    wallet_id = uuid.uuid4()
    wallet = FakeWallet(
        identifier=identifier if identifier is not None else str(wallet_id),
        currency=payload["currency"],
        country=payload["country"],
        wallet_id=wallet_id,
        account_number=ledger.new_account_number(),
    )
    ledger.wallets[wallet.identifier] = wallet
    return {"wallet": wallet.to_wire()}


def _check_reason(payload: Reply) -> None:
    _text(payload, "identifier")
    _text(payload, "description")


def _apply_block(ledger: FakeLedger, payload: Reply) -> Outcome:
    wallet = ledger._wallet(payload)
    if wallet.status == WalletStatus.CLOSED:
        raise _Refusal("1007", "wallet is closed")
    if wallet.status == WalletStatus.BLOCKED:
        raise _Refusal("1008", "wallet is already blocked")
    wallet.status = WalletStatus.BLOCKED.value
    wallet.description = payload["description"]
    return {}


def _apply_close(ledger: FakeLedger, payload: Reply) -> Outcome:
    wallet = ledger._wallet(payload)
    if wallet.status == WalletStatus.CLOSED:
        raise _Refusal("1007", "wallet is already closed")
    if wallet.balance != 0:
        raise _Refusal("1005", f"wallet balance is {wallet.balance}, not zero")
    wallet.status = WalletStatus.CLOSED.value
    wallet.description = payload["description"]
    return {}


_OWNER_RESERVED: Final = frozenset({"request_id", "identifier"})


def _check_owner(payload: Reply) -> None:
    _text(payload, "identifier")
    if not set(payload) - _OWNER_RESERVED:
        raise _Refusal("1001", "no owner fields")


def _apply_owner(ledger: FakeLedger, payload: Reply) -> Outcome:
    wallet = ledger._wallet(payload)
    if wallet.status == WalletStatus.CLOSED:
        raise _Refusal("1007", "wallet is closed")
    wallet.owner.update({k: v for k, v in payload.items() if k not in _OWNER_RESERVED})
    if not wallet.owner_id:
        wallet.owner_id = str(uuid.uuid5(_NAMESPACE, f"owner:{wallet.wallet_id}"))
    return {}


_MUTATIONS: Final[dict[str, tuple[Callable[[Reply], None], Apply]]] = {
    "add": (_check_add, _apply_add),
    "block": (_check_reason, _apply_block),
    "close": (_check_reason, _apply_close),
    "identify_owner": (_check_owner, _apply_owner),
}
# The fake answers every endpoint of the table, and nothing else.
assert set(_MUTATIONS) | {"info", "balance", "statement", "request_status"} == set(ENDPOINTS)


def _text(payload: Reply, name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _Refusal("1001", f"{name} is required")
    return value


def _uuid(payload: Reply, name: str) -> uuid.UUID:
    value = payload.get(name)
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise _Refusal("1001", f"{name} must be a UUID")


def _optional_datetime(payload: Reply, name: str) -> datetime | None:
    value = payload.get(name)
    if value is None:
        return None
    try:
        return msgspec.convert(value, AwareDatetime)
    except msgspec.ValidationError:
        raise _Refusal("1001", f"{name} must be an RFC 3339 date-time with an offset") from None


def operations_from(items: Iterable[FakeOperation | Reply]) -> list[FakeOperation]:
    """Accept :class:`FakeOperation` objects or dicts of its fields."""
    return [item if isinstance(item, FakeOperation) else FakeOperation(**item) for item in items]
