"""The SQLite event bus: log order, cursors that survive restarts, at-least-once delivery."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagakit import ConfigurationError, SagakitError
from sagakit.course.eventbus import DeliveryOutcome, EventBus, EventBusError, Message


def test_messages_reach_subscribers_in_log_order(tmp_path: Path) -> None:
    bus = EventBus(tmp_path / "bus.db")
    seen: list[tuple[str, str]] = []
    bus.subscribe("a", ["Ping"], lambda m: seen.append(("a", m.kind)))
    bus.subscribe("b", ["Ping", "Pong"], lambda m: seen.append(("b", m.kind)))
    bus.publish("Ping", saga_id="s1", sender="test")
    bus.publish("Pong", saga_id="s1", sender="test", data={"n": 2})
    deliveries = bus.drain()
    assert seen == [("a", "Ping"), ("b", "Ping"), ("b", "Pong")]
    assert all(d.outcome is DeliveryOutcome.HANDLED for d in deliveries)
    assert bus.messages(kind="Pong")[0].data == {"n": 2}
    assert bus.pending("b") == []


def test_handlers_can_publish_and_drain_follows_the_chain(tmp_path: Path) -> None:
    bus = EventBus(tmp_path / "bus.db")

    def relay(message: Message) -> None:
        bus.publish("Second", saga_id=message.saga_id, sender="relay")

    bus.subscribe("relay", ["First"], relay)
    bus.subscribe("sink", ["Second"], lambda m: None)
    bus.publish("First", saga_id="s1", sender="test")
    bus.publish("First", saga_id="s2", sender="test")
    bus.drain()
    assert [m.kind for m in bus.messages(saga_id="s2")] == ["First", "Second"]
    assert [(d.subscriber, d.message.kind) for d in bus.deliveries(saga_id="s1")] == [
        ("relay", "First"),
        ("sink", "Second"),
    ]


def test_a_new_subscriber_starts_at_the_end_of_the_log(tmp_path: Path) -> None:
    bus = EventBus(tmp_path / "bus.db")
    bus.publish("Ping", saga_id="old", sender="test")
    bus.subscribe("late", ["Ping"], lambda m: None)
    assert bus.pending("late") == []


def test_a_crash_keeps_the_message_until_the_subscriber_returns(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    bus = EventBus(path)
    calls: list[int] = []

    def flaky(message: Message) -> None:
        calls.append(message.position)
        if len(calls) == 1:
            raise RuntimeError("power cut")

    bus.subscribe("svc", ["Job"], flaky)
    bus.publish("Job", saga_id="s1", sender="test")
    (crash,) = bus.drain()
    assert crash.outcome is DeliveryOutcome.CRASHED
    assert crash.error == "RuntimeError: power cut"
    assert bus.attached() == []
    assert [m.kind for m in bus.pending("svc")] == ["Job"]

    restarted = EventBus(path)  # a new process: the cursor is in the file
    restarted.subscribe("svc", ["Job"], flaky)
    (again,) = restarted.drain()
    assert again.outcome is DeliveryOutcome.HANDLED
    assert calls == [1, 1]
    assert restarted.pending("svc") == []


def test_messages_published_while_a_subscriber_is_away_wait_for_it(tmp_path: Path) -> None:
    bus = EventBus(tmp_path / "bus.db")
    got: list[str] = []
    bus.subscribe("svc", ["Job"], lambda m: got.append(m.saga_id))
    bus.detach("svc")
    bus.publish("Job", saga_id="while-away", sender="test")
    assert bus.drain() == []
    bus.subscribe("svc", ["Job"], lambda m: got.append(m.saga_id))
    bus.drain()
    assert got == ["while-away"]


def test_usage_errors_explain_themselves(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="database file"):
        EventBus(":memory:")
    bus = EventBus(tmp_path / "bus.db")
    with pytest.raises(EventBusError, match="no kind"):
        bus.subscribe("svc", [], lambda m: None)
    bus.subscribe("svc", ["A"], lambda m: None)
    with pytest.raises(EventBusError, match="another subscriber name"):
        bus.subscribe("svc", ["B"], lambda m: None)
    with pytest.raises(EventBusError, match="known subscribers: svc"):
        bus.pending("nobody")
    with pytest.raises(ConfigurationError, match="JSON"):
        bus.publish("A", saga_id="s", sender="t", data={"x": object()})
    assert issubclass(EventBusError, SagakitError)


def test_drain_stops_a_loop_of_handlers(tmp_path: Path) -> None:
    bus = EventBus(tmp_path / "bus.db")

    def echo(message: Message) -> None:
        bus.publish("Echo", saga_id="s", sender="echo")

    bus.subscribe("echo", ["Echo"], echo)
    bus.publish("Echo", saga_id="s", sender="test")
    with pytest.raises(EventBusError, match="keep triggering"):
        bus.drain(limit=5)
