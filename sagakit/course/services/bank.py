"""The bank: accounts with whole-number balances that never go below zero.

``withdraw`` and ``deposit`` are the two halves of a money-transfer saga (take
from one account, give to another; undo a withdrawal with a deposit back). Each
payment can carry a ``reference`` (what it is for, e.g. ``"order 7"``): the
invariant checker uses it to spot a double charge. ``transfer`` moves money
between two accounts in one local transaction, for comparison.

Money is never created here: the total of all balances stays what the accounts
were opened with once every saga has finished. A world where it does not is
broken, and :func:`sagakit.course.services.invariants.check_world` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from sqlite3 import Connection

from sagakit import ConfigurationError
from sagakit.course.services import _store
from sagakit.course.services.errors import InsufficientFunds, UnknownAccount

__all__ = ["BANK_SCHEMA", "BankService", "Receipt", "TransferReceipt"]

SERVICE = "bank"

BANK_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS bank_accounts (
    account     TEXT PRIMARY KEY,
    balance     INTEGER NOT NULL CHECK (balance >= 0),
    opened_with INTEGER NOT NULL CHECK (opened_with >= 0)
);
{_store.requests_table("bank_requests")}
"""
"""DDL of the bank's tables."""


@dataclass(frozen=True)
class Receipt:
    """What a deposit or withdrawal did."""

    operation: str
    """``"deposit"`` or ``"withdraw"``."""
    account: str
    """The account."""
    amount: int
    """How much moved (always positive)."""
    balance: int
    """The balance right after."""
    reference: str
    """What the payment was for."""


@dataclass(frozen=True)
class TransferReceipt:
    """What a transfer did."""

    source: str
    """The account the money left."""
    target: str
    """The account the money reached."""
    amount: int
    """How much moved."""
    source_balance: int
    """The source's balance right after."""
    target_balance: int
    """The target's balance right after."""
    reference: str
    """What the payment was for."""


class BankService:
    """Open accounts and move money; state lives in the world file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def open_account(self, account: str, balance: int = 0) -> Receipt:
        """Open ``account`` with a starting ``balance`` (this is where money enters the world).

        Raises:
            ConfigurationError: The account exists already, or the balance is negative.
        """
        if not account:
            raise ConfigurationError("An account needs a name, e.g. 'alice'.")
        if balance < 0:
            raise ConfigurationError(f"A starting balance must be 0 or more, got {balance}.")
        with _store.writing(self.path) as conn:
            if _balance_or_none(conn, account) is not None:
                raise ConfigurationError(
                    f"Account {account!r} exists already; pick another name, or call "
                    "world.reset() to start from a clean world."
                )
            conn.execute(
                "INSERT INTO bank_accounts (account, balance, opened_with) VALUES (?, ?, ?)",
                (account, balance, balance),
            )
            _store.record(
                conn,
                service=SERVICE,
                operation="open",
                entity=account,
                amount=balance,
                idempotency_key=None,
                detail=f"opened with {balance}",
            )
        return Receipt("open", account, balance, balance, "")

    def deposit(
        self,
        account: str,
        amount: int,
        *,
        reference: str = "",
        idempotency_key: str | None = None,
    ) -> Receipt:
        """Add ``amount`` to ``account``; without a key, every call adds again.

        Raises:
            UnknownAccount: There is no such account.
        """
        return self._move("deposit", account, amount, reference, idempotency_key)

    def withdraw(
        self,
        account: str,
        amount: int,
        *,
        reference: str = "",
        idempotency_key: str | None = None,
    ) -> Receipt:
        """Take ``amount`` from ``account``; without a key, every call takes again.

        Raises:
            UnknownAccount: There is no such account.
            InsufficientFunds: The balance is less than ``amount`` (nothing is taken).
        """
        return self._move("withdraw", account, amount, reference, idempotency_key)

    def transfer(
        self,
        source: str,
        target: str,
        amount: int,
        *,
        reference: str = "",
        idempotency_key: str | None = None,
    ) -> TransferReceipt:
        """Move ``amount`` from ``source`` to ``target`` in one local transaction.

        Raises:
            UnknownAccount: Either account does not exist.
            InsufficientFunds: ``source`` has less than ``amount`` (nothing moves).
        """
        _store.check_positive("amount", amount)
        if source == target:
            raise ConfigurationError(
                f"A transfer needs two different accounts, got {source!r} twice."
            )
        with _store.writing(self.path) as conn:

            def effect() -> TransferReceipt:
                source_balance = _change(
                    conn, source, -amount, "transfer_out", reference, idempotency_key
                )
                target_balance = _change(
                    conn, target, amount, "transfer_in", reference, idempotency_key
                )
                return TransferReceipt(
                    source, target, amount, source_balance, target_balance, reference
                )

            return _store.run_once(
                conn,
                table="bank_requests",
                idempotency_key=idempotency_key,
                operation="transfer",
                request={
                    "source": source,
                    "target": target,
                    "amount": amount,
                    "reference": reference,
                },
                result_type=TransferReceipt,
                effect=effect,
            )

    def balance(self, account: str) -> int:
        """Return the balance of ``account``.

        Raises:
            UnknownAccount: There is no such account.
        """
        with _store.reading(self.path) as conn:
            found = _balance_or_none(conn, account)
            if found is None:
                raise _unknown(conn, account)
            return found

    def balances(self) -> dict[str, int]:
        """Return every account's balance, by account name."""
        with _store.reading(self.path) as conn:
            rows = conn.execute("SELECT account, balance FROM bank_accounts ORDER BY account")
            return {str(r["account"]): int(r["balance"]) for r in rows}

    def total(self) -> int:
        """Return the sum of all balances."""
        return sum(self.balances().values())

    def opened_total(self) -> int:
        """Return the sum of the opening balances: what :meth:`total` should be after every saga."""
        with _store.reading(self.path) as conn:
            row = conn.execute("SELECT COALESCE(SUM(opened_with), 0) FROM bank_accounts").fetchone()
            return int(row[0])

    def _move(
        self, operation: str, account: str, amount: int, reference: str, key: str | None
    ) -> Receipt:
        _store.check_positive("amount", amount)
        with _store.writing(self.path) as conn:

            def effect() -> Receipt:
                delta = amount if operation == "deposit" else -amount
                balance = _change(conn, account, delta, operation, reference, key)
                return Receipt(operation, account, amount, balance, reference)

            return _store.run_once(
                conn,
                table="bank_requests",
                idempotency_key=key,
                operation=operation,
                request={"account": account, "amount": amount, "reference": reference},
                result_type=Receipt,
                effect=effect,
            )


def _balance_or_none(conn: Connection, account: str) -> int | None:
    row = conn.execute("SELECT balance FROM bank_accounts WHERE account = ?", (account,)).fetchone()
    return None if row is None else int(row["balance"])


def _unknown(conn: Connection, account: str) -> UnknownAccount:
    names = [
        str(r["account"])
        for r in conn.execute("SELECT account FROM bank_accounts ORDER BY account")
    ]
    return UnknownAccount(
        f"There is no account {account!r}. Accounts: {', '.join(names) or '(none)'}; "
        "open one with world.bank.open_account(name, balance)."
    )


def _change(
    conn: Connection, account: str, delta: int, operation: str, reference: str, key: str | None
) -> int:
    balance = _balance_or_none(conn, account)
    if balance is None:
        raise _unknown(conn, account)
    if balance + delta < 0:
        raise InsufficientFunds(
            f"Account {account!r} has {balance}, so {-delta} cannot be taken from it"
            + (f" (for {reference})" if reference else "")
            + ". Nothing was taken; the saga should stop and undo what it did so far."
        )
    conn.execute(
        "UPDATE bank_accounts SET balance = balance + ? WHERE account = ?", (delta, account)
    )
    _store.record(
        conn,
        service=SERVICE,
        operation=operation,
        entity=account,
        amount=delta,
        idempotency_key=key,
        reference=reference,
        detail=f"balance {balance} -> {balance + delta}",
    )
    return balance + delta
