"""The customer directory: who is calling, and what they most likely want.

A caller ID says which number called, not who is speaking: a flow's ``verify``
step asks the caller to prove it (:meth:`CustomerDirectory.verify`) with a PIN,
their date of birth or the last digits of their account number.  PINs are
kept only as salted scrypt hashes, hashed and checked in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Select, bindparam, select

from hotline.storage.db import Database
from hotline.storage.point_reads import PointReader, PointReadError
from hotline.storage.tables import CustomerRow

log = logging.getLogger("hotline.customers")

CSV_FIELDS = (
    "name",
    "phone",
    "account",
    "language",
    "balance",
    "last_bill_date",
    "last_bill_amount",
    "bill_due_date",
    "open_ticket",
    "pin",  # 4 to 8 digits, stored hashed; an empty cell leaves the PIN as it is
    "birth_date",  # YYYY-MM-DD; the caller keys it as DDMMYYYY
    "flags",  # what an agent should know at a glance: "vip;churn_risk" (; or , between)
)

# A customer flag: a short lower-case name (vip, churn_risk, fraud_watch, ...).
FLAG_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_FLAGS = 8


def parse_flags(text: str) -> tuple[str, ...]:
    """Flags as the CSV or the database column holds them, in order, each once.

    ValueError when one is not a flag name or there are more than ``MAX_FLAGS``.
    """
    out: list[str] = []
    for raw in re.split(r"[;,]", text):
        flag = raw.strip().lower()
        if not flag:
            continue
        if not FLAG_PATTERN.fullmatch(flag):
            raise ValueError(f"not a flag name (a-z, 0-9, _): {raw.strip()!r}")
        if flag not in out:
            out.append(flag)
    if len(out) > MAX_FLAGS:
        raise ValueError(f"{len(out)} flags: at most {MAX_FLAGS}")
    return tuple(out)


def _stored_flags(value: str | None) -> tuple[str, ...]:
    """The flags column as read back (written by the import: valid; else best effort)."""
    if not value:
        return ()
    try:
        return parse_flags(value)
    except ValueError:
        log.warning("customer flags not understood; ignored")
        return ()


# What a ``verify`` step asks for: a PIN, the date of birth (DDMMYYYY) or the
# last digits of the account number.
VerifyMethod = Literal["pin", "birth_date", "account"]
VERIFY_METHODS: tuple[VerifyMethod, ...] = ("pin", "birth_date", "account")
PIN_PATTERN = re.compile(r"[0-9]{4,8}")

# scrypt's cost (16 MiB, ~40 ms a hash); kept in each hash, so raising it later
# leaves the PINs already stored readable.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_pin(pin: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) of a PIN.  CPU-bound: run it in a thread."""
    if not PIN_PATTERN.fullmatch(pin):
        raise ValueError("a PIN is 4 to 8 digits")
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(
        pin.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=2**26, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def pin_matches(pin: str, stored: str) -> bool:
    """Whether ``pin`` is the one ``stored`` (a :func:`hash_pin` value) was made from."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        got = hashlib.scrypt(
            pin.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=2**26,
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def birth_date_keyed(entered: str) -> date | None:
    """A date of birth as a caller keys it, DDMMYYYY; None if it is no date."""
    if not re.fullmatch(r"[0-9]{8}", entered):
        return None
    try:
        return date(int(entered[4:]), int(entered[2:4]), int(entered[:2]))
    except ValueError:
        return None


class CustomerImportError(Exception):
    """A CSV row cannot be imported; the message names file, line and column."""


def normalize_phone(number: str) -> str:
    """Digits only: '+1 (555) 010-0001' and '15550100001' are the same caller."""
    return re.sub(r"\D", "", number)


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    name: str
    phone: str
    account: str
    language: str
    balance_cents: int
    last_bill_date: date | None
    last_bill_cents: int | None
    bill_due_date: date | None
    open_ticket: str | None
    # vip, churn_risk, ...: what an agent should know at a glance.
    flags: tuple[str, ...] = ()

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.strip() else self.name

    @property
    def has_bill_due(self) -> bool:
        return self.balance_cents > 0 and self.bill_due_date is not None

    def profile(self) -> dict[str, Any]:
        """The JSON-friendly view agents and flows see."""
        d = asdict(self)
        for k in ("last_bill_date", "bill_due_date"):
            d[k] = d[k].isoformat() if d[k] else None
        d["balance"] = self.balance_cents / 100
        d["last_bill_amount"] = None if self.last_bill_cents is None else self.last_bill_cents / 100
        d["first_name"] = self.first_name
        d["has_bill_due"] = self.has_bill_due
        d["flags"] = list(self.flags)
        return d


_CUSTOMERS = CustomerRow.__table__
_CUSTOMER_FIELDS = (
    "id",
    "name",
    "phone",
    "account",
    "language",
    "balance_cents",
    "last_bill_date",
    "last_bill_cents",
    "bill_due_date",
    "open_ticket",
    "flags",
)


def _lookup_by(column: str) -> Select[Any]:
    """A call-path lookup: the customer whose ``column`` is the bound ``value``."""
    fields = (_CUSTOMERS.c[name] for name in _CUSTOMER_FIELDS)
    return select(*fields).where(_CUSTOMERS.c[column] == bindparam("value")).limit(1)


_BY_PHONE = _lookup_by("phone")
_BY_ACCOUNT = _lookup_by("account")


def _customer(row: Any) -> Customer:
    """From an ORM row or a Core result row (both have the columns as attributes)."""
    fields = {name: getattr(row, name) for name in _CUSTOMER_FIELDS}
    fields["flags"] = _stored_flags(fields["flags"])
    return Customer(**fields)


def _customer_from_values(values: tuple[Any, ...]) -> Customer:
    """From a lookup's plain row: the values of ``_CUSTOMER_FIELDS``, in that order."""
    fields = dict(zip(_CUSTOMER_FIELDS, values, strict=True))
    fields["flags"] = _stored_flags(fields["flags"])
    return Customer(**fields)


def _cents(text: str, where: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not re.fullmatch(r"-?\d+(\.\d{1,2})?", text):
        raise CustomerImportError(f"{where}: not an amount: {text!r}")
    whole, _, frac = text.partition(".")
    sign = -1 if whole.startswith("-") else 1
    return sign * (abs(int(whole)) * 100 + int((frac + "00")[:2]))


def _date(text: str, where: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CustomerImportError(f"{where}: not a date (YYYY-MM-DD): {text!r}") from None


class CustomerDirectory:
    """The customer directory: lookups for calls, import and listing for admins.

    The lookups run at the start of every call, before the greeting, so the
    driver runs them on a connection of their own (``PointReader``): ~0.1 ms,
    with next to nothing on the event loop, where 0.6 ms through SQLAlchemy's
    async layer delayed other calls' AGI commands at 1000 calls.  A failed
    lookup (database restarted) reconnects and is tried once more.
    """

    LOOKUP_TIMEOUT_S = 2.0

    def __init__(self, db: Database) -> None:
        self._db = db
        self._reads: PointReader | None = None

    async def by_phone(self, number: str) -> Customer | None:
        phone = normalize_phone(number)
        if not phone:
            return None
        return await self._one(_BY_PHONE, phone)

    async def by_account(self, account: str) -> Customer | None:
        return await self._one(_BY_ACCOUNT, account.strip())

    async def _one(self, stmt: Select[Any], value: str) -> Customer | None:
        if self._reads is None:
            self._reads = PointReader(self._db, self.LOOKUP_TIMEOUT_S)
        try:
            row = await self._reads.first(stmt, value)
        except PointReadError as e:
            # The reader reconnects on its next read: once, for a database restart.
            log.warning("customer lookup failed (%s); reconnecting", e)
            row = await self._reads.first(stmt, value)
        return None if row is None else _customer_from_values(row)

    async def close(self) -> None:
        """Release the lookups' connection (before the database is closed)."""
        if self._reads is not None:
            await self._reads.close()

    async def get(self, customer_id: int) -> Customer | None:
        async with self._db.sessions() as s:
            row = await s.get(CustomerRow, customer_id)
            return _customer(row) if row else None

    async def list(self) -> list[Customer]:
        async with self._db.sessions() as s:
            rows = await s.scalars(select(CustomerRow).order_by(CustomerRow.id))
            return [_customer(r) for r in rows]

    async def verify(
        self, customer_id: int, method: VerifyMethod, entered: str, digits: int = 4
    ) -> bool:
        """Whether what the caller keyed proves they are this customer.

        ``pin``: the PIN (a customer without one cannot pass); ``birth_date``:
        DDMMYYYY; ``account``: the last ``digits`` digits of the account number.
        Nothing entered is logged or kept.
        """
        if not entered.isdigit():
            return False
        async with self._db.sessions() as s:
            row = await s.get(CustomerRow, customer_id)
        if row is None:
            return False
        if method == "pin":
            stored = row.pin_hash
            if not stored:
                return False
            return await asyncio.to_thread(pin_matches, entered, stored)
        if method == "birth_date":
            keyed = birth_date_keyed(entered)
            return keyed is not None and row.birth_date is not None and keyed == row.birth_date
        account = re.sub(r"\D", "", row.account)
        return len(entered) == digits <= len(account) and hmac.compare_digest(
            entered, account[-digits:]
        )

    async def set_pin(self, account: str, pin: str | None) -> bool:
        """Set (or with None, remove) a customer's PIN; False if no such account."""
        hashed = None if pin is None else await asyncio.to_thread(hash_pin, pin)
        async with self._db.sessions() as s, s.begin():
            row = await s.scalar(select(CustomerRow).where(CustomerRow.account == account.strip()))
            if row is None:
                return False
            row.pin_hash = hashed
            return True

    async def pay_balance(self, customer_id: int, amount_cents: int) -> Customer:
        """Book a payment against the balance (the demo's payment back end)."""
        async with self._db.sessions() as s, s.begin():
            row = await s.get(CustomerRow, customer_id, with_for_update=True)
            if row is None:
                raise LookupError(f"no customer {customer_id}")
            row.balance_cents = max(0, row.balance_cents - amount_cents)
            if row.balance_cents == 0:
                row.bill_due_date = None
            return _customer(row)

    async def import_csv(self, path: Path) -> tuple[int, int]:
        """Insert or update customers from CSV (by account).  Returns (added, updated).

        The whole file is validated first, so a bad row changes nothing.
        """
        rows = _read_csv(path)
        # PINs are hashed off the event loop, all before the transaction.
        pins = [values.pop("pin", None) for values in rows]
        hashes = await asyncio.gather(
            *(asyncio.to_thread(hash_pin, pin) for pin in pins if pin is not None)
        )
        it = iter(hashes)
        for values, pin in zip(rows, pins, strict=True):
            if pin is not None:
                values["pin_hash"] = next(it)
        added = updated = 0
        async with self._db.sessions() as s, s.begin():
            for values in rows:
                existing = await s.scalar(
                    select(CustomerRow).where(CustomerRow.account == values["account"])
                )
                if existing is None:
                    s.add(CustomerRow(**values))
                    added += 1
                else:
                    for k, v in values.items():
                        setattr(existing, k, v)
                    updated += 1
        return added, updated


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        unknown = [h for h in header if h not in CSV_FIELDS]
        if unknown:
            raise CustomerImportError(f"{path}:1: unknown column(s): {', '.join(unknown)}")
        for required in ("name", "phone", "account"):
            if required not in header:
                raise CustomerImportError(f"{path}:1: missing column {required!r}")
        out: list[dict[str, Any]] = []
        seen_phone: dict[str, int] = {}
        for line_no, rec in enumerate(reader, start=2):
            where = f"{path}:{line_no}"
            phone = normalize_phone(rec.get("phone") or "")
            if not phone:
                raise CustomerImportError(f"{where}: phone: no digits in {rec.get('phone')!r}")
            if phone in seen_phone:
                raise CustomerImportError(
                    f"{where}: phone {phone} already on line {seen_phone[phone]}"
                )
            seen_phone[phone] = line_no
            account = (rec.get("account") or "").strip()
            if not account:
                raise CustomerImportError(f"{where}: account: empty")
            pin = (rec.get("pin") or "").strip()
            if pin and not PIN_PATTERN.fullmatch(pin):
                # The value itself stays out of the message: it is a secret.
                raise CustomerImportError(f"{where}: pin: expected 4 to 8 digits")
            values: dict[str, Any] = {
                "name": (rec.get("name") or "").strip(),
                "phone": phone,
                "account": account,
                "language": (rec.get("language") or "en").strip() or "en",
                "balance_cents": _cents(rec.get("balance") or "", f"{where}: balance") or 0,
                "last_bill_date": _date(rec.get("last_bill_date") or "", f"{where}"),
                "last_bill_cents": _cents(rec.get("last_bill_amount") or "", where),
                "bill_due_date": _date(rec.get("bill_due_date") or "", where),
                "open_ticket": (rec.get("open_ticket") or "").strip() or None,
            }
            if "birth_date" in header:
                values["birth_date"] = _date(rec.get("birth_date") or "", f"{where}: birth_date")
            if "flags" in header:
                try:
                    flags = parse_flags(rec.get("flags") or "")
                except ValueError as e:
                    raise CustomerImportError(f"{where}: flags: {e}") from None
                values["flags"] = ",".join(flags) or None
            if pin:
                values["pin"] = pin
            out.append(values)
        return out
