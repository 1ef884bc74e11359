"""The simulated services and the invariant checker, without Temporal."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sagakit import ConfigurationError, SagakitError
from sagakit.course.services import (
    TRIP_KINDS,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvariantViolated,
    NoBowlOut,
    OutOfStock,
    SoldOut,
    UnknownAccount,
    ViolationKind,
    World,
    WorldSeed,
    check_world,
)
from sagakit.course.services.errors import CancelledBeforeBooking
from sagakit.course.services.trip import TripService


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "world.db")


# -- persistence and the ledger ------------------------------------------------------------


def test_state_survives_a_restart(tmp_path: Path) -> None:
    first = World(tmp_path / "world.db")
    first.trips.book_hotel("t1", "ada", idempotency_key="t1-hotel")
    first.breakfast.get_bowl("b1")
    first.bank.withdraw("alice", 120, reference="t1")
    del first

    again = World(tmp_path / "world.db")  # a new process would do exactly this
    assert again.trips.active("t1") == {"hotel": 1, "flight": 0, "excursion": 0}
    assert again.breakfast.state("b1").bowls == 1
    assert again.bank.balance("alice") == 380
    assert [e.operation for e in again.ledger.entries(service="trips")] == ["book_hotel"]
    # The idempotency key is remembered across the restart too.
    again.trips.book_hotel("t1", "ada", idempotency_key="t1-hotel")
    assert again.trips.active("t1")["hotel"] == 1


def test_new_world_is_stocked_once_and_reset_restocks(tmp_path: Path) -> None:
    seed = WorldSeed(bowls=1, milk_ml=100, accounts={"carol": 50})
    world = World(tmp_path / "w.db", seed=seed)
    assert world.bank.balances() == {"carol": 50}
    world.breakfast.get_bowl("b1")
    assert World(tmp_path / "w.db").breakfast.stock().bowls == 0  # not re-stocked on reopen
    world.reset()
    assert world.bank.balances() == {"alice": 500, "bob": 500}
    assert world.breakfast.stock().bowls == 4
    assert world.breakfast.breakfasts() == []
    assert [e.operation for e in world.ledger.entries()] == ["open", "open"]


def test_memory_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="database FILE"):
        World(":memory:")


def test_checking_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="No world file"):
        check_world(tmp_path / "typo.db")
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.parametrize("content", [b"", b"not a database at all"])
def test_checking_a_file_that_is_no_world_is_refused_and_leaves_it_alone(
    tmp_path: Path, content: bytes
) -> None:
    other = tmp_path / "notes.db"
    other.write_bytes(content)
    with pytest.raises(ConfigurationError, match=r"'.*notes\.db' is not a world file"):
        check_world(other)
    assert other.read_bytes() == content  # not turned into a freshly stocked world


def test_a_world_is_checked_by_its_path_as_by_the_object(world: World) -> None:
    world.trips.book_hotel("t1", "ada")
    by_path = check_world(str(world.path))
    assert by_path == world.check()
    assert [v.kind for v in by_path.violations] == [ViolationKind.PARTIAL_TRIP]


def test_ledger_records_every_effect(world: World) -> None:
    world.trips.book_hotel("t1", "ada")
    world.trips.book_flight("t1", "ada")
    world.trips.cancel_flight("t1")
    world.trips.cancel_excursion("t1")  # nothing to cancel: no effect, no ledger row
    world.breakfast.get_bowl("b1")
    world.breakfast.add_cereal("b1", 50)
    world.breakfast.add_milk("b1", 150)
    world.bank.withdraw("alice", 30, reference="r1")
    world.bank.deposit("bob", 30, reference="r1")
    world.bank.transfer("bob", "alice", 5, reference="r2")
    rows = [(e.service, e.operation, e.entity, e.amount) for e in world.ledger.entries()]
    assert rows == [
        ("bank", "open", "alice", 500),
        ("bank", "open", "bob", 500),
        ("trips", "book_hotel", "t1", 1),
        ("trips", "book_flight", "t1", 1),
        ("trips", "cancel_flight", "t1", -1),
        ("breakfast", "get_bowl", "b1", 1),
        ("breakfast", "add_cereal", "b1", 50),
        ("breakfast", "add_milk", "b1", 150),
        ("bank", "withdraw", "alice", -30),
        ("bank", "deposit", "bob", 30),
        ("bank", "transfer_out", "bob", -5),
        ("bank", "transfer_in", "alice", 5),
    ]
    assert world.ledger.count("book_hotel", "t1") == 1
    assert "book_hotel(t1) +1" in str(world.ledger)
    assert "<table>" in world.ledger._repr_html_()


# -- idempotency -------------------------------------------------------------------------


def test_without_a_key_a_repeat_has_a_second_effect(world: World) -> None:
    first = world.trips.book_hotel("t1", "ada")
    second = world.trips.book_hotel("t1", "ada")
    assert first.booking_id != second.booking_id
    assert world.ledger.count("book_hotel", "t1") == 2
    world.bank.withdraw("alice", 100, reference="t1")
    world.bank.withdraw("alice", 100, reference="t1")
    assert world.bank.balance("alice") == 300


def test_a_key_dedupes_and_returns_the_first_result(world: World) -> None:
    first = world.trips.book_hotel("t1", "ada", idempotency_key="k1")
    again = world.trips.book_hotel("t1", "ada", idempotency_key="k1")
    assert again == first
    assert world.ledger.count("book_hotel") == 1
    paid = world.bank.withdraw("alice", 100, reference="t1", idempotency_key="pay-t1")
    assert world.bank.withdraw("alice", 100, reference="t1", idempotency_key="pay-t1") == paid
    assert world.bank.balance("alice") == 400
    bowl = world.breakfast.get_bowl("b1", idempotency_key="b1-bowl")
    assert world.breakfast.get_bowl("b1", idempotency_key="b1-bowl") == bowl
    assert world.breakfast.state("b1").bowls == 1
    with sqlite3.connect(world.path) as conn:
        replays = conn.execute(
            "SELECT replays FROM trip_requests WHERE operation = 'book_hotel'"
            " AND idempotency_key = 'k1'"
        ).fetchone()
    assert replays == (1,)


def test_a_key_is_scoped_to_one_operation(world: World) -> None:
    # One trip's key may go to every step, as if each were its own service.
    for _ in range(2):
        for kind in TRIP_KINDS:
            world.trips.book(kind, "t1", "ada", idempotency_key="trip-t1")
        world.trips.cancel_hotel("t1", idempotency_key="trip-t1")
    assert world.trips.active("t1") == {"hotel": 0, "flight": 1, "excursion": 1}
    assert len(world.ledger.entries(service="trips")) == 4


def test_a_key_reused_for_another_request_is_refused(world: World) -> None:
    world.trips.book_hotel("t1", "ada", idempotency_key="k")
    with pytest.raises(IdempotencyKeyReused, match="first sent to book_hotel with"):
        world.trips.book_hotel("t2", "ada", idempotency_key="k")
    world.bank.deposit("bob", 10, reference="tx", idempotency_key="tx")
    with pytest.raises(IdempotencyKeyReused, match="ONE request"):
        world.bank.deposit("alice", 10, reference="tx", idempotency_key="tx")
    assert world.trips.bookings("t2") == []
    assert world.bank.balance("alice") == 500


def test_a_refused_request_stores_no_key_so_it_can_be_retried(world: World) -> None:
    world.breakfast.set_stock(milk_ml=0)
    world.breakfast.get_bowl("b1")
    with pytest.raises(OutOfStock):
        world.breakfast.add_milk("b1", idempotency_key="b1-milk")
    world.breakfast.set_stock(milk_ml=500)
    assert world.breakfast.add_milk("b1", idempotency_key="b1-milk").milk_ml == 200


def test_64_concurrent_duplicates_with_one_key_have_one_effect(world: World) -> None:
    def book(_: int) -> int:
        return (
            World(world.path).trips.book_hotel("t1", "ada", idempotency_key="t1-hotel").booking_id
        )

    def pay(_: int) -> int:
        return World(world.path).bank.withdraw("alice", 7, idempotency_key="pay").balance

    with ThreadPoolExecutor(max_workers=64) as pool:
        booking_ids = set(pool.map(book, range(64)))
        balances = set(pool.map(pay, range(64)))
    assert len(booking_ids) == 1
    assert balances == {493}
    assert world.trips.active("t1")["hotel"] == 1
    assert world.ledger.count("book_hotel") == 1
    assert world.ledger.count("withdraw") == 1


def test_64_concurrent_calls_without_a_key_all_take_effect(world: World) -> None:
    with ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(lambda _: world.bank.deposit("bob", 1), range(64)))
    assert world.bank.balance("bob") == 564
    assert world.ledger.count("deposit", "bob") == 64


# -- each service's rules -----------------------------------------------------------------


def test_cancel_if_present_is_a_no_op_and_cancels_duplicates(world: World) -> None:
    assert world.trips.cancel_hotel("t1").cancelled == 0
    world.trips.book_hotel("t1")
    world.trips.book_hotel("t1")
    assert world.trips.cancel_hotel("t1").cancelled == 2
    assert world.trips.cancel_hotel("t1").cancelled == 0
    assert [b.status for b in world.trips.bookings("t1")] == ["cancelled", "cancelled"]


def test_sold_out_books_nothing_and_cancel_frees_a_place(world: World) -> None:
    world.trips.set_capacity("excursion", 1)
    world.trips.book_excursion("t1")
    with pytest.raises(SoldOut, match="sold out"):
        world.trips.book_excursion("t2")
    assert world.trips.capacity("excursion") == 0
    world.trips.cancel_excursion("t1")
    assert world.trips.capacity("excursion") == 1
    assert world.trips.book_excursion("t2").trip_id == "t2"
    with pytest.raises(ConfigurationError, match="not part of a trip"):
        world.trips.book("spa", "t1")  # type: ignore[arg-type]


# -- cancel wins ----------------------------------------------------------------------------


def test_a_booking_whose_cancel_already_ran_is_refused_and_recorded(world: World) -> None:
    """Cancel wins: the undo ran first (it found nothing), the late booking books nothing."""
    assert world.trips.cancel_excursion("t1", idempotency_key="t1").cancelled == 0
    assert world.trips.cancelled_under("excursion", "t1")  # the tombstone
    assert world.ledger.entries(service="trips") == []  # a cancel that found nothing: no effect
    for _ in range(2):  # a second late attempt is refused as well
        with pytest.raises(CancelledBeforeBooking, match="cancel wins"):
            world.trips.book_excursion("t1", "ada", idempotency_key="t1")
    assert world.trips.bookings("t1") == []
    refusals = world.ledger.entries(operation="book_excursion_refused")
    assert [(e.entity, e.amount, e.idempotency_key) for e in refusals] == [("t1", 0, "t1")] * 2
    assert check_world(world).ok, "a refusal is a record, not a repeated effect"


def test_cancel_wins_only_per_kind_and_key(world: World) -> None:
    world.trips.cancel_hotel("t1", idempotency_key="t1")
    assert world.trips.book_flight("t1", idempotency_key="t1").status == "active"  # other kind
    assert world.trips.book_hotel("t1", idempotency_key="t1@run-2").status == "active"  # new key
    assert world.trips.book_hotel("t2").status == "active"  # no key: nothing to match
    assert not world.trips.cancelled_under("flight", "t1")


def test_a_booking_made_before_its_cancel_is_replayed_not_refused(world: World) -> None:
    first = world.trips.book_hotel("t1", "ada", idempotency_key="t1")
    assert world.trips.cancel_hotel("t1", idempotency_key="t1").cancelled == 1
    assert world.trips.book_hotel("t1", "ada", idempotency_key="t1") == first  # its first answer
    assert world.trips.active("t1")["hotel"] == 0
    assert world.ledger.count("book_hotel_refused") == 0


def test_without_cancel_wins_a_late_booking_leaks(world: World) -> None:
    """The service of the lesson's "before": the late booking is an orphan."""
    trips = TripService(world.path, cancel_wins=False)
    trips.cancel_flight("t1", idempotency_key="t1")
    assert trips.book_flight("t1", idempotency_key="t1").status == "active"
    assert world.trips.active("t1")["flight"] == 1
    assert ViolationKind.PARTIAL_TRIP in check_world(world).kinds


def test_breakfast_steps_and_their_undos(world: World) -> None:
    with pytest.raises(NoBowlOut, match="Run get_bowl first"):
        world.breakfast.add_cereal("b1")
    world.breakfast.get_bowl("b1")
    world.breakfast.add_cereal("b1", 60)
    assert world.breakfast.stock().cereal_g == 940
    world.breakfast.put_cereal_back_if_present("b1")
    world.breakfast.put_cereal_back_if_present("b1")
    assert world.breakfast.stock().cereal_g == 1000
    world.breakfast.put_bowl_away_if_present("b1")
    assert world.breakfast.state("b1").untouched
    assert world.breakfast.stock().bowls == 4
    world.breakfast.put_bowl_away_if_present("b2")  # never started: a no-op
    assert world.breakfast.state("b2").untouched


def test_out_of_milk_is_a_business_error_that_changes_nothing(world: World) -> None:
    world.breakfast.set_stock(milk_ml=100)
    world.breakfast.get_bowl("b1")
    with pytest.raises(OutOfStock, match="Out of milk") as caught:
        world.breakfast.add_milk("b1", 200)
    assert isinstance(caught.value, SagakitError)
    assert world.breakfast.state("b1").milk_ml == 0
    assert world.breakfast.stock().milk_ml == 100
    assert world.ledger.count("add_milk") == 0


def test_putting_a_full_bowl_away_throws_the_contents_away(world: World) -> None:
    world.breakfast.get_bowl("b1")
    world.breakfast.add_cereal("b1", 60)
    world.breakfast.put_bowl_away_if_present("b1")
    assert world.breakfast.stock().cereal_g == 940
    [thrown] = world.ledger.entries(operation="throw_away_cereal")
    assert (thrown.amount, thrown.detail) == (-60, "threw away 60 g cereal left in the bowl")
    assert world.ledger.count("throw_away_milk") == 0


def test_balances_never_go_negative(world: World) -> None:
    with pytest.raises(InsufficientFunds, match="has 500"):
        world.bank.withdraw("alice", 501)
    with pytest.raises(InsufficientFunds):
        world.bank.transfer("alice", "bob", 501)
    assert world.bank.balances() == {"alice": 500, "bob": 500}
    with pytest.raises(UnknownAccount, match="Accounts: alice, bob"):
        world.bank.deposit("mallory", 1)
    with pytest.raises(ConfigurationError, match="above 0"):
        world.bank.withdraw("alice", -5)
    with pytest.raises(ConfigurationError, match="exists already"):
        world.bank.open_account("alice", 1)


# -- the invariant checker ----------------------------------------------------------------


def test_a_consistent_world_passes(world: World) -> None:
    for kind in TRIP_KINDS:
        world.trips.book(kind, "t1", "ada")
    world.trips.book_hotel("t2")
    world.trips.cancel_hotel("t2")  # compensated: nothing left
    world.breakfast.get_bowl("b1")
    world.breakfast.add_cereal("b1")
    world.breakfast.add_milk("b1")
    world.breakfast.get_bowl("b2")
    world.breakfast.add_cereal("b2")
    world.breakfast.put_cereal_back_if_present("b2")
    world.breakfast.put_bowl_away_if_present("b2")
    world.bank.withdraw("alice", 100, reference="tx1")
    world.bank.deposit("bob", 100, reference="tx1")
    world.bank.withdraw("bob", 20, reference="tx2")
    world.bank.deposit("bob", 20, reference="tx2")  # refund
    report = check_world(world.path)
    assert report.ok, str(report)
    assert report.violations == ()
    assert (
        str(report)
        == "✓ all invariants hold (2 trips, 2 breakfasts, 2 accounts, 18 ledger entries)"
    )
    report.raise_if_broken()


def test_the_report_names_only_what_the_world_used(world: World) -> None:
    # A trip lesson's world still has its bank accounts (opened: 2 ledger entries) and an
    # empty pantry.
    for kind in TRIP_KINDS:
        world.trips.book(kind, "t1", "ada")
    assert str(check_world(world.path)) == "✓ all invariants hold (1 trip, 5 ledger entries)"
    world.bank.withdraw("alice", 10, reference="tx1")
    world.bank.deposit("bob", 10, reference="tx1")
    assert "1 trip, 2 accounts, 7 ledger entries" in str(check_world(world.path))


def test_checker_reports_a_partial_trip(world: World) -> None:
    world.trips.book_hotel("t1")
    report = world.check()
    assert not report.ok
    assert [v.message for v in report.violations] == [
        "trip t1: hotel booked but flight and excursion not (not all-or-nothing)"
    ]
    assert report.kinds == {ViolationKind.PARTIAL_TRIP}
    with pytest.raises(InvariantViolated, match="not all-or-nothing"):
        report.raise_if_broken()


def test_checker_reports_a_double_booking(world: World) -> None:
    for kind in TRIP_KINDS:
        world.trips.book(kind, "t1")
    world.trips.book_flight("t1")
    report = world.check()
    assert report.kinds == {ViolationKind.DOUBLE_BOOKING}
    assert report.about("trip t1")[0].message == "trip t1: flight booked 2 times (double booking)"


def test_checker_reports_a_bowl_left_on_the_counter(world: World) -> None:
    world.breakfast.get_bowl("b1")
    world.breakfast.get_bowl("b2")
    world.breakfast.add_cereal("b2")
    messages = [v.message for v in world.check().violations]
    assert messages == [
        "breakfast b1: bowl left on the counter (not all-or-nothing)",
        "breakfast b2: bowl and cereal left out, but no milk (not all-or-nothing)",
    ]


def test_checker_reports_double_pours_and_bowls(world: World) -> None:
    world.breakfast.get_bowl("b1")
    world.breakfast.get_bowl("b1")
    world.breakfast.add_cereal("b1")
    world.breakfast.add_milk("b1")
    world.breakfast.add_milk("b1")
    report = world.check()
    assert report.kinds == {ViolationKind.DOUBLE_SERVING}
    assert [v.message for v in report.violations] == [
        "breakfast b1: 2 bowls out for one breakfast (a step ran twice)",
        "breakfast b1: milk poured 2 times into one bowl",
    ]


def test_checker_reports_a_double_charge_and_lost_money(world: World) -> None:
    world.bank.withdraw("alice", 10, reference="tx1")
    world.bank.withdraw("alice", 10, reference="tx1")
    world.bank.deposit("bob", 10, reference="tx1")
    messages = [v.message for v in world.check().violations]
    assert messages == [
        "account alice: charged 2 times for 'tx1' (double charge)",
        "money not conserved: 1000 in, 990 now (10 missing)",
    ]


def test_checker_reports_an_effect_repeated_under_one_key(world: World) -> None:
    # A service that forgot its dedupe table: construct the broken world directly.
    world.bank.withdraw("alice", 10, idempotency_key="k-9")
    with sqlite3.connect(world.path) as conn:
        conn.execute(
            "INSERT INTO ledger (at, service, operation, entity, amount, idempotency_key)"
            " VALUES ('2024-01-01', 'bank', 'withdraw', 'alice', -10, 'k-9')"
        )
        conn.execute("UPDATE bank_accounts SET balance = balance - 10 WHERE account = 'alice'")
    report = world.check()
    assert "double charge on key 'k-9': withdraw on alice happened 2 times" in [
        v.message for v in report.violations
    ]
    assert ViolationKind.MONEY_NOT_CONSERVED in report.kinds


def test_checker_reports_a_balance_the_ledger_does_not_explain(world: World) -> None:
    with sqlite3.connect(world.path) as conn:
        conn.execute("UPDATE bank_accounts SET balance = 400 WHERE account = 'alice'")
        conn.execute("UPDATE bank_accounts SET balance = 600 WHERE account = 'bob'")
    report = check_world(world)
    assert report.kinds == {ViolationKind.LEDGER_MISMATCH}  # money conserved, ledger not
    assert report.about("account alice")[0].message.startswith(
        "account alice: balance 400, but its ledger entries add up to 500"
    )
    assert "invariant violation" in report._repr_html_()
