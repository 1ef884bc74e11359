"""Lesson 03: atomicity, consistency, isolation and durability on real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sagakit import ConfigurationError
from sagakit.course.lessons.acid import (
    STILL_WRITING,
    InterleavingStuck,
    Step,
    UnknownAccount,
    balances,
    count_orders,
    deposit_atomic,
    deposit_locked,
    deposit_read_modify_write,
    interleave,
    open_bank,
    sql_step,
    trace_table,
    transfer,
    transfer_without_transaction,
)
from sagakit.course.processes import ChildProcess


@pytest.fixture
def bank(tmp_path: Path) -> Path:
    return tmp_path / "bank.db"


def test_a_failed_transfer_without_a_transaction_loses_money(bank: Path) -> None:
    conn = open_bank(bank, {"alice": 100, "bob": 0})
    with pytest.raises(UnknownAccount, match="'bobb'"):
        transfer_without_transaction(conn, "alice", "bobb", 30)
    assert balances(conn) == {"alice": 70, "bob": 0}
    conn.close()


def test_a_failed_transfer_in_a_transaction_rolls_back(bank: Path) -> None:
    conn = open_bank(bank, {"alice": 100, "bob": 0})
    with pytest.raises(UnknownAccount):
        transfer(conn, "alice", "bobb", 30)
    assert balances(conn) == {"alice": 100, "bob": 0}
    assert not conn.in_transaction
    transfer(conn, "alice", "bob", 30)
    assert balances(conn) == {"alice": 70, "bob": 30}
    conn.close()


def test_the_database_refuses_a_transaction_that_breaks_its_rule(bank: Path) -> None:
    conn = open_bank(bank, {"alice": 100, "bob": 0})
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        transfer(conn, "alice", "bob", 130)
    assert balances(conn) == {"alice": 100, "bob": 0}
    conn.close()


def test_open_bank_resets_the_accounts(bank: Path) -> None:
    open_bank(bank, {"alice": 1, "carol": 2}).close()
    conn = open_bank(bank, {"alice": 5})
    assert balances(conn) == {"alice": 5}
    conn.close()


def _final_balance(bank: Path) -> int:
    conn = sqlite3.connect(bank)
    (balance,) = conn.execute("SELECT balance FROM accounts WHERE name = 'alice'").fetchone()
    conn.close()
    return int(balance)


def test_interleaved_read_modify_write_loses_an_update(bank: Path) -> None:
    open_bank(bank, {"alice": 100}).close()
    sessions = {
        "A": deposit_read_modify_write("alice", 10),
        "B": deposit_read_modify_write("alice", 20),
    }
    trace = interleave(bank, sessions, "ABAB")
    assert [(line.session, line.outcome) for line in trace] == [
        ("A", "balance is 100"),
        ("B", "balance is 100"),
        ("A", "set balance to 110"),
        ("B", "set balance to 120"),
    ]
    assert _final_balance(bank) == 120


def test_one_after_the_other_nothing_is_lost(bank: Path) -> None:
    open_bank(bank, {"alice": 100}).close()
    sessions = {
        "A": deposit_read_modify_write("alice", 10),
        "B": deposit_read_modify_write("alice", 20),
    }
    interleave(bank, sessions, "AABB")
    assert _final_balance(bank) == 130


def test_begin_immediate_makes_the_second_session_wait(bank: Path) -> None:
    open_bank(bank, {"alice": 100}).close()
    sessions = {"A": deposit_locked("alice", 10), "B": deposit_locked("alice", 20)}
    trace = interleave(bank, sessions, "AB" * 4)
    waits = [line for line in trace if line.outcome.startswith("waits")]
    assert waits
    assert {line.session for line in waits} == {"B"}
    assert "database is locked" in waits[0].outcome
    assert _final_balance(bank) == 130


def test_an_atomic_update_loses_nothing(bank: Path) -> None:
    open_bank(bank, {"alice": 100}).close()
    sessions = {"A": deposit_atomic("alice", 10), "B": deposit_atomic("alice", 20)}
    trace = interleave(bank, sessions, "BA")
    assert [line.outcome for line in trace] == ["changed 1 row", "changed 1 row"]
    assert _final_balance(bank) == 130


def test_a_conditional_update_never_oversells(bank: Path) -> None:
    conn = sqlite3.connect(bank, isolation_level=None)
    conn.execute("CREATE TABLE stock (item TEXT PRIMARY KEY, quantity INTEGER NOT NULL)")
    conn.execute("INSERT INTO stock VALUES ('lamp', 3)")
    sql = "UPDATE stock SET quantity = quantity - :want WHERE item = :item AND quantity >= :want"
    params = {"want": 2, "item": "lamp"}
    sessions = {"A": [sql_step("buy 2", sql, params)], "B": [sql_step("buy 2", sql, params)]}
    trace = interleave(bank, sessions, "AB")
    assert [line.outcome for line in trace] == ["changed 1 row", "changed 0 rows"]
    assert conn.execute("SELECT quantity FROM stock").fetchone() == (1,)
    conn.close()


def test_a_schedule_with_an_unknown_session_is_refused(bank: Path) -> None:
    open_bank(bank, {"alice": 100}).close()
    with pytest.raises(ConfigurationError, match=r"\['C'\]"):
        interleave(bank, {"A": deposit_atomic("alice", 1)}, "AC")


def test_sessions_that_wait_for_each_other_forever_are_reported(bank: Path) -> None:
    # A real SQLite deadlock: both read inside a transaction, then both want to write.
    open_bank(bank, {"alice": 100}).close()

    def session() -> list[Step]:
        return [
            sql_step("begin", "BEGIN"),
            sql_step("read", "SELECT balance FROM accounts"),
            sql_step("write", "UPDATE accounts SET balance = balance + 1"),
            sql_step("commit", "COMMIT"),
        ]

    with pytest.raises(InterleavingStuck, match="COMMIT or ROLLBACK"):
        interleave(bank, {"A": session(), "B": session()}, "AABB", max_turns=20)


def test_other_database_errors_are_not_mistaken_for_waiting(bank: Path) -> None:
    open_bank(bank, {"alice": 100}).close()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        interleave(bank, {"A": [sql_step("oops", "SELECT * FROM nowhere")]}, "A")


def test_trace_table_has_one_row_per_turn(bank: Path) -> None:
    open_bank(bank, {"alice": 100}).close()
    trace = interleave(bank, {"A": deposit_atomic("alice", 1)}, "A")
    text = trace_table(trace, title="t").text()
    assert text.splitlines()[0] == "t"
    assert "add 1" in text


def test_committed_rows_survive_sigkill_and_uncommitted_ones_vanish(tmp_path: Path) -> None:
    orders = tmp_path / "orders.db"
    for _ in range(2):  # a second run starts from an empty table again
        with ChildProcess.start("sagakit.course.lessons.acid", "writer", str(orders)) as child:
            child.wait_for_line(STILL_WRITING)
            child.kill()
        journal = Path(f"{orders}-journal")
        assert journal.exists(), "the killed writer should leave its rollback journal behind"
        size_after_crash = orders.stat().st_size
        counts = count_orders(orders)
        assert (counts.committed, counts.uncommitted) == (3, 0)
        assert not journal.exists()
        assert orders.stat().st_size < size_after_crash
