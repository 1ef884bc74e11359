"""SAGAKIT_LEARNER: a learner's own namespace, names scoped in a shared one, links that follow."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy

from sagakit import ConfigurationError, course
from sagakit.course.learner import (
    LEARNER_ENV,
    choose_namespace,
    default_learner,
    learner,
    learner_namespace,
    scoped,
    validate_learner,
)
from sagakit.course.playground import TripChoice, run_trip
from sagakit.course.processes import start_worker_process
from tests.helpers import pollers

pytestmark = pytest.mark.usefixtures("no_learner")


def a_learner() -> str:
    """A learner name no other test (or earlier run) uses."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("name", ["ada", "table-3-bo", "x", "a" * 32, "007"])
def test_plain_names_are_valid(name: str) -> None:
    assert validate_learner(name) == name


@pytest.mark.parametrize("name", ["", "Ada", "a" * 33, "ada.b", "ada_b", "ada b", "élodie"])
def test_other_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ConfigurationError, match=r"SAGAKIT_LEARNER=.*1 to 32 lowercase"):
        validate_learner(name)


def test_learner_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert learner() is None
    monkeypatch.setenv(LEARNER_ENV, "  ")
    assert learner() is None
    monkeypatch.setenv(LEARNER_ENV, "ada")
    assert learner() == "ada"
    monkeypatch.setenv(LEARNER_ENV, "Ada Lovelace")
    with pytest.raises(ConfigurationError, match="not a valid learner name"):
        learner()


def test_the_instructor_namespace_wins_then_the_learner_then_default() -> None:
    given = choose_namespace("table-3", "ada")
    assert (given.namespace, given.given, given.own, given.shared) == ("table-3", True, False, True)
    own = choose_namespace(None, "ada")
    assert (own.namespace, own.given, own.own, own.shared) == ("learner-ada", False, True, False)
    alone = choose_namespace(None, None)
    assert (alone.namespace, alone.given, alone.own, alone.shared) == (
        "default",
        False,
        False,
        False,
    )
    # The instructor may hand out learner-<name> namespaces themselves: still the learner's own.
    assert choose_namespace("learner-ada", "ada").own


def test_names_are_scoped_only_in_a_shared_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    assert scoped("lesson-09-happy") == "lesson-09-happy"  # no learner: unchanged
    monkeypatch.setenv(LEARNER_ENV, "ada")
    assert scoped("lesson-09-happy") == "lesson-09-happy"  # learner-ada is ada's alone
    assert scoped("lesson-09", namespace="table-3") == "ada.lesson-09"
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "table-3")
    assert scoped("lesson-09-happy") == "ada.lesson-09-happy"
    assert scoped("lesson-09", namespace=learner_namespace("ada")) == "lesson-09"


async def test_connect_registers_the_learners_namespace_and_links_follow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = a_learner()
    monkeypatch.setenv(LEARNER_ENV, name)
    client = await course.connect()
    assert client.namespace == f"learner-{name}"
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace)
    )
    assert described.namespace_info.name == client.namespace
    handle = await client.start_workflow(
        "NoWorkerNeeded", id="lesson-06-pack", task_queue="lesson-06"
    )
    try:
        link = course.web_ui_url(handle.id, handle.result_run_id)
        assert f"/namespaces/learner-{name}/workflows/lesson-06-pack/" in link
        # A second kernel of the same learner finds the namespace there and reuses it.
        again = await course.connect()
        assert again.namespace == client.namespace
        described_again = await again.get_workflow_handle(handle.id).describe()
        assert described_again.run_id == handle.result_run_id
    finally:
        await handle.terminate()


async def test_an_invalid_learner_name_stops_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LEARNER_ENV, "Ada!")
    with pytest.raises(ConfigurationError, match="not a valid learner name"):
        await course.connect()


async def test_the_instructors_namespace_is_used_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(LEARNER_ENV, a_learner())
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "default")
    client = await course.connect()
    assert client.namespace == "default"


async def test_two_learners_with_the_same_workflow_id_do_not_terminate_each_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handles = []
    for _ in range(2):
        monkeypatch.setenv(LEARNER_ENV, a_learner())
        client = await course.connect()
        handles.append(
            await client.start_workflow(
                "NoWorkerNeeded",
                id="lesson-09-happy",
                task_queue="lesson-09",
                id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
            )
        )
    try:
        for handle in handles:
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    finally:
        for handle in handles:
            await handle.terminate()


async def test_a_worker_process_polls_in_the_learners_namespace(
    monkeypatch: pytest.MonkeyPatch, task_queue: str
) -> None:
    monkeypatch.setenv(LEARNER_ENV, a_learner())
    client = await course.connect()
    child = await start_worker_process(
        client, "sagakit.course.lessons.durable", "worker", task_queue, task_queue=task_queue
    )
    try:
        assert await pollers(client, task_queue)  # it polls here ...
        assert not await pollers(client, task_queue, namespace="default")  # ... not in default
    finally:
        child.terminate()


async def test_run_trip_carries_the_learner_in_a_shared_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = a_learner()
    monkeypatch.setenv(LEARNER_ENV, name)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "default")
    client = await course.connect()
    run = await run_trip(
        client, TripChoice(step=None), workdir=tmp_path, workflow_id="lesson-09-happy"
    )
    assert run.workflow_id == f"{name}.lesson-09-happy"
    assert run.trip_id == "lesson-09-happy"
    assert run.outcome == "booked"
    description = await client.get_workflow_handle(run.workflow_id).describe()
    assert description.task_queue == f"{name}.lesson-09"


@pytest.mark.parametrize("address", ["10.1.2.3:7233", "class-server.example:7233"])
def test_a_server_elsewhere_gives_a_learner_without_a_name_one_of_their_own(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    name = learner()
    assert name is not None
    assert name == default_learner()
    assert validate_learner(name) == name
    assert choose_namespace(None, name).namespace == f"learner-{name}"
    monkeypatch.setenv(LEARNER_ENV, "")  # an explicit "just me"
    assert learner() is None
    monkeypatch.setenv(LEARNER_ENV, "ada")
    assert learner() == "ada"


@pytest.mark.parametrize("address", ["127.0.0.1:7233", "localhost:7233", "[::1]:7233"])
def test_the_local_dev_server_needs_no_learner(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    assert learner() is None


@pytest.mark.parametrize(
    ("user", "host", "expected"),
    [
        ("Ada", "Ada-Laptop.local", "ada-ada-laptop"),
        ("jean_luc", "bridge_01", "jean-luc-bridge-01"),
        ("x" * 40, "host", "x" * 32),
        ("élodie", "pc", "lodie-pc"),
        ("", "", None),
    ],
)
def test_the_default_learner_is_a_valid_name_from_user_and_host(
    monkeypatch: pytest.MonkeyPatch, user: str, host: str, expected: str | None
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: user)
    monkeypatch.setattr("socket.gethostname", lambda: host)
    assert default_learner() == expected
    if expected is not None:
        assert validate_learner(expected) == expected
