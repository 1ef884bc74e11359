"""Who is learning, and where their workflows live on a Temporal service shared by a class.

On a laptop nobody needs this: the course uses the dev server's ``default``
namespace and fixed names (``lesson-09-happy``, task queue ``lesson-09``). In a
class that shares one Temporal service, those fixed names would collide: one
learner's re-run would terminate another's workflow, and their workers would
poll each other's task queues. So each learner says who they are with
``SAGAKIT_LEARNER`` and gets a namespace of their own. A namespace partitions
workflow IDs, task queues and the Web UI, so the fixed names of the notebooks
are safe again: two learners can both run ``lesson-09-happy``.

The namespace :func:`sagakit.course.connect` uses is, in this order:

1. the one the instructor named (``TEMPORAL_NAMESPACE`` or the profile's
   ``namespace``), used as it is;
2. ``learner-<name>`` when ``SAGAKIT_LEARNER`` is set (registered on first use
   when the server allows it, as a dev server does); when it is unset and the
   server is on another machine, ``<name>`` defaults to the user and host names
   (:func:`default_learner`), so a class never shares ``default`` by accident;
3. ``default`` otherwise: nothing changes for a learner alone on a laptop.

When the instructor's namespace is shared by several learners (one per table,
say) and ``SAGAKIT_LEARNER`` is set, every workflow ID and task queue carries the
learner: ``lesson-09-happy`` becomes ``ada.lesson-09-happy`` (see :func:`scoped`).
The names the course's own tooling builds (trip runs, the playground, exercise
checks) call :func:`scoped` themselves; the names written out in a notebook cell
are renamed by :class:`LearnerScope`, the client interceptor that
:func:`sagakit.course.connect` installs in a shared namespace (and only there).
It renames the workflow ID of every call that names a workflow (start, signal,
query, update, describe, cancel, terminate, history), the task queue of every
start, and the task queue that :func:`sagakit.running_worker` and the course's
worker processes poll, so the notebooks run unchanged (schedules and standalone
activities get the same treatment). Names already scoped are left alone. Not
renamed: List Filter queries, Nexus operations, and the IDs and task queues that
workflow code itself gives child workflows.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    ListWorkflowExecutionsRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import (
    ActivityExecutionDescription,
    ActivityExecutionOptions,
    ActivityHandle,
    AsyncActivityIDReference,
    BackfillScheduleInput,
    CancelActivityInput,
    CancelWorkflowInput,
    Client,
    CompleteAsyncActivityInput,
    CreateScheduleInput,
    DeleteScheduleInput,
    DescribeActivityInput,
    DescribeScheduleInput,
    DescribeWorkflowInput,
    FailAsyncActivityInput,
    FetchWorkflowHistoryEventsInput,
    HeartbeatAsyncActivityInput,
    Interceptor,
    OutboundInterceptor,
    PauseActivityInput,
    PauseScheduleInput,
    QueryWorkflowInput,
    ReportCancellationAsyncActivityInput,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleHandle,
    SignalWorkflowInput,
    StartActivityInput,
    StartWorkflowInput,
    StartWorkflowUpdateInput,
    StartWorkflowUpdateWithStartInput,
    TerminateActivityInput,
    TerminateWorkflowInput,
    TriggerScheduleInput,
    UnpauseActivityInput,
    UnpauseScheduleInput,
    UpdateActivityOptionsInput,
    UpdateScheduleInput,
    WorkflowExecutionDescription,
    WorkflowHandle,
    WorkflowHistoryEventAsyncIterator,
    WorkflowUpdateHandle,
)
from temporalio.service import RPCError, RPCStatusCode

from sagakit._errors import ConfigurationError
from sagakit._net import is_loopback, parse_address
from sagakit.course._polling import poll_until
from sagakit.course.profile import configured_profile

__all__ = [
    "DEFAULT_NAMESPACE",
    "LEARNER_ENV",
    "LEARNER_PATTERN",
    "LearnerScope",
    "NamespaceChoice",
    "choose_namespace",
    "configured_namespace",
    "default_learner",
    "ensure_namespace",
    "learner",
    "learner_namespace",
    "scoped",
    "validate_learner",
]

LEARNER_ENV = "SAGAKIT_LEARNER"
"""Environment variable that names the learner (``ada``, ``table-3-bo``)."""

DEFAULT_NAMESPACE = "default"
"""The namespace used when neither the instructor nor the learner names one."""

LEARNER_PATTERN = re.compile(r"[a-z0-9-]{1,32}")
"""What a learner name may be: 1 to 32 lowercase letters, digits and ``-``."""

RETENTION = timedelta(days=1)
"""How long a namespace registered for a learner keeps closed workflows (as ``default`` does)."""


def validate_learner(name: str) -> str:
    """Return ``name`` if it is a valid learner name, else raise a clear error.

    A learner name becomes part of a namespace (``learner-<name>``) and of
    workflow IDs, so it is kept short and plain.

    Raises:
        ConfigurationError: ``name`` is empty, too long, or has other characters
            than lowercase letters, digits and ``-``.
    """
    if LEARNER_PATTERN.fullmatch(name):
        return name
    raise ConfigurationError(
        f"{LEARNER_ENV}={name!r} is not a valid learner name: use 1 to 32 lowercase "
        "letters, digits and '-' (for example ada or table-3-bo). Set it before "
        "starting Jupyter, e.g. `export SAGAKIT_LEARNER=ada`, or unset it to work "
        "in the default namespace."
    )


def learner() -> str | None:
    """The learner: ``SAGAKIT_LEARNER``, else a default on a shared server, else ``None``.

    - ``SAGAKIT_LEARNER`` set to a name: that name (validated).
    - ``SAGAKIT_LEARNER`` set but empty: ``None``, on any server (an explicit "just me").
    - unset, with a server configured elsewhere than this machine (``TEMPORAL_ADDRESS``
      or a profile naming a host that is not loopback): :func:`default_learner`, so
      a learner who forgot to choose a name still gets a namespace of their own.
    - unset otherwise (the local dev server): ``None``, so every name and output
      stays as the notebooks show them.

    Raises:
        ConfigurationError: the name is not valid (see :func:`validate_learner`), or
            the Temporal configuration cannot be read.
    """
    raw = os.environ.get(LEARNER_ENV)
    if raw is not None:
        name = raw.strip()
        return validate_learner(name) if name else None
    profile = configured_profile()
    if profile is None or not _elsewhere(profile.address):
        return None
    return default_learner()


def _elsewhere(address: str | None) -> bool:
    """Whether ``address`` names a server on another machine."""
    try:
        host, _port = parse_address(address or "")
    except ConfigurationError:
        return False  # connect() says what is wrong with it, naming where it came from
    return not is_loopback(host)


def default_learner() -> str | None:
    """A learner name made from the user and host names (``ada-laptop-7``), or ``None``.

    Lowercased, every run of other characters turned into one ``-``, cut to 32
    characters; ``None`` if nothing is left.
    """
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment or the password database
        user = ""
    host = socket.gethostname().split(".")[0]
    name = re.sub(r"[^a-z0-9]+", "-", f"{user}-{host}".lower())[:32].strip("-")
    return name or None


def learner_namespace(name: str) -> str:
    """The namespace of learner ``name`` when the instructor names none: ``learner-<name>``."""
    return f"learner-{validate_learner(name)}"


def configured_namespace() -> str | None:
    """The namespace the instructor named: ``TEMPORAL_NAMESPACE``, else the profile's, else None.

    Raises:
        ConfigurationError: the Temporal configuration cannot be read.
    """
    named = os.environ.get("TEMPORAL_NAMESPACE", "").strip()
    if named:
        return named
    profile = configured_profile()
    return profile.namespace if profile is not None and profile.namespace else None


@dataclass(frozen=True)
class NamespaceChoice:
    """The namespace a connection uses, and why."""

    namespace: str
    """The namespace to connect to."""

    learner: str | None
    """The learner (see :func:`learner`), or ``None``."""

    given: bool
    """Whether the instructor named it (``TEMPORAL_NAMESPACE`` or a profile)."""

    @property
    def own(self) -> bool:
        """Whether the namespace belongs to the learner alone (``learner-<name>``)."""
        return self.learner is not None and self.namespace == learner_namespace(self.learner)

    @property
    def shared(self) -> bool:
        """Whether a named learner works in a namespace that others may use too."""
        return self.learner is not None and not self.own


def choose_namespace(configured: str | None, name: str | None) -> NamespaceChoice:
    """Decide the namespace from the instructor's choice and the learner's name.

    Args:
        configured: the namespace the instructor named, or ``None``.
        name: the learner, or ``None``.
    """
    if configured:
        return NamespaceChoice(configured, name, given=True)
    if name is not None:
        return NamespaceChoice(learner_namespace(name), name, given=False)
    return NamespaceChoice(DEFAULT_NAMESPACE, None, given=False)


def scoped(name: str, *, namespace: str | None = None) -> str:
    """A workflow ID or task queue name that no other learner in the namespace uses.

    In the ``default`` namespace without a learner, and in a learner's own
    namespace, names are already private: ``name`` comes back unchanged. In a
    namespace shared by several learners, it is prefixed with the learner's
    name: ``scoped("lesson-09-happy")`` is ``"ada.lesson-09-happy"``. (A learner
    name has no ``.``, so the prefix can never be mistaken for another's.) A name
    that has the prefix already comes back unchanged.

    Args:
        name: the name the lesson uses.
        namespace: the namespace the name is used in, for example
            ``client.namespace``; by default the one :func:`choose_namespace`
            picks from the environment.

    Raises:
        ConfigurationError: ``SAGAKIT_LEARNER`` is not valid.
    """
    who = learner()
    if who is None:
        return name
    space = namespace or choose_namespace(configured_namespace(), who).namespace
    return name if space == learner_namespace(who) else _prefixed(who, name)


def _prefixed(who: str, name: str) -> str:
    """``name`` with the prefix ``<who>.``, unless it has it already."""
    prefix = f"{who}."
    return name if name.startswith(prefix) else prefix + name


class LearnerScope(Interceptor):
    """A client interceptor that gives the learner's workflow IDs and task queues their prefix.

    :func:`sagakit.course.connect` installs it when ``SAGAKIT_LEARNER`` names a
    learner who works in a namespace shared with others (never in ``default``
    without a learner, nor in the learner's own namespace). Every call that names
    a workflow then uses ``<learner>.<id>``, every start uses the task queue
    ``<learner>.<task_queue>``, and :meth:`worker_task_queue` tells the workers
    (:func:`sagakit.running_worker`, the course's worker processes) to poll that
    queue. A name that has the prefix already is left alone, so the handle that
    ``start_workflow`` returns (whose ID is scoped) works as it is. Standalone
    activities and schedules are renamed the same way; List Filter queries,
    Nexus operations and the names workflow code gives its child workflows are not.

    Args:
        learner: the learner's name (see :func:`validate_learner`).

    Raises:
        ConfigurationError: ``learner`` is not a valid learner name.
    """

    def __init__(self, learner: str) -> None:
        self.learner = validate_learner(learner)
        """The learner whose prefix names get."""

    def scope(self, name: str) -> str:
        """``name`` with the learner's prefix: ``"ada.lesson-09-happy"`` (unchanged if it has it)."""
        return _prefixed(self.learner, name)

    def worker_task_queue(self, task_queue: str) -> str:
        """The task queue a worker of this client polls when asked for ``task_queue``."""
        return self.scope(task_queue)

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        """Wrap the client's calls so that they use the scoped names."""
        return _ScopedCalls(next, self)

    @staticmethod
    def of(client: Client) -> LearnerScope | None:
        """The :class:`LearnerScope` installed on ``client``, or ``None``."""
        for interceptor in client.config()["interceptors"]:
            if isinstance(interceptor, LearnerScope):
                return interceptor
        return None

    def __repr__(self) -> str:
        return f"LearnerScope({self.learner!r})"


class _ScopedCalls(OutboundInterceptor):
    """The outbound side of :class:`LearnerScope`: each call with the scoped names."""

    def __init__(self, next: OutboundInterceptor, scope: LearnerScope) -> None:
        super().__init__(next)
        self._scope = scope.scope

    # -- workflows

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        s = self._scope
        return await self.next.start_workflow(
            replace(input, id=s(input.id), task_queue=s(input.task_queue))
        )

    async def cancel_workflow(self, input: CancelWorkflowInput) -> None:
        await self.next.cancel_workflow(replace(input, id=self._scope(input.id)))

    async def describe_workflow(self, input: DescribeWorkflowInput) -> WorkflowExecutionDescription:
        return await self.next.describe_workflow(replace(input, id=self._scope(input.id)))

    def fetch_workflow_history_events(
        self, input: FetchWorkflowHistoryEventsInput
    ) -> WorkflowHistoryEventAsyncIterator:
        return self.next.fetch_workflow_history_events(replace(input, id=self._scope(input.id)))

    async def query_workflow(self, input: QueryWorkflowInput) -> Any:
        return await self.next.query_workflow(replace(input, id=self._scope(input.id)))

    async def signal_workflow(self, input: SignalWorkflowInput) -> None:
        await self.next.signal_workflow(replace(input, id=self._scope(input.id)))

    async def terminate_workflow(self, input: TerminateWorkflowInput) -> None:
        await self.next.terminate_workflow(replace(input, id=self._scope(input.id)))

    async def start_workflow_update(
        self, input: StartWorkflowUpdateInput
    ) -> WorkflowUpdateHandle[Any]:
        return await self.next.start_workflow_update(replace(input, id=self._scope(input.id)))

    async def start_update_with_start_workflow(
        self, input: StartWorkflowUpdateWithStartInput
    ) -> WorkflowUpdateHandle[Any]:
        # Renamed in place: the client builds the workflow handle from this very object.
        start = input.start_workflow_input
        start.id, start.task_queue = self._scope(start.id), self._scope(start.task_queue)
        return await self.next.start_update_with_start_workflow(input)

    # -- activities completed from outside (by workflow ID) and standalone activities

    async def heartbeat_async_activity(self, input: HeartbeatAsyncActivityInput) -> None:
        await self.next.heartbeat_async_activity(
            replace(input, id_or_token=self._by_id(input.id_or_token))
        )

    async def complete_async_activity(self, input: CompleteAsyncActivityInput) -> None:
        await self.next.complete_async_activity(
            replace(input, id_or_token=self._by_id(input.id_or_token))
        )

    async def fail_async_activity(self, input: FailAsyncActivityInput) -> None:
        await self.next.fail_async_activity(
            replace(input, id_or_token=self._by_id(input.id_or_token))
        )

    async def report_cancellation_async_activity(
        self, input: ReportCancellationAsyncActivityInput
    ) -> None:
        await self.next.report_cancellation_async_activity(
            replace(input, id_or_token=self._by_id(input.id_or_token))
        )

    def _by_id(
        self, id_or_token: AsyncActivityIDReference | bytes
    ) -> AsyncActivityIDReference | bytes:
        if isinstance(id_or_token, AsyncActivityIDReference) and id_or_token.workflow_id:
            return replace(id_or_token, workflow_id=self._scope(id_or_token.workflow_id))
        return id_or_token

    async def start_activity(self, input: StartActivityInput) -> ActivityHandle[Any]:
        s = self._scope
        return await self.next.start_activity(
            replace(input, id=s(input.id), task_queue=s(input.task_queue))
        )

    async def cancel_activity(self, input: CancelActivityInput) -> None:
        await self.next.cancel_activity(replace(input, activity_id=self._scope(input.activity_id)))

    async def terminate_activity(self, input: TerminateActivityInput) -> None:
        await self.next.terminate_activity(
            replace(input, activity_id=self._scope(input.activity_id))
        )

    async def pause_activity(self, input: PauseActivityInput) -> None:
        await self.next.pause_activity(replace(input, activity_id=self._scope(input.activity_id)))

    async def unpause_activity(self, input: UnpauseActivityInput) -> None:
        await self.next.unpause_activity(replace(input, activity_id=self._scope(input.activity_id)))

    async def update_activity_options(
        self, input: UpdateActivityOptionsInput
    ) -> ActivityExecutionOptions:
        return await self.next.update_activity_options(
            replace(input, activity_id=self._scope(input.activity_id))
        )

    async def describe_activity(self, input: DescribeActivityInput) -> ActivityExecutionDescription:
        return await self.next.describe_activity(
            replace(input, activity_id=self._scope(input.activity_id))
        )

    # -- schedules

    async def create_schedule(self, input: CreateScheduleInput) -> ScheduleHandle:
        action = input.schedule.action
        if isinstance(action, ScheduleActionStartWorkflow):
            action = replace(
                action, id=self._scope(action.id), task_queue=self._scope(action.task_queue)
            )
        schedule = replace(input.schedule, action=action)
        return await self.next.create_schedule(
            replace(input, id=self._scope(input.id), schedule=schedule)
        )

    async def backfill_schedule(self, input: BackfillScheduleInput) -> None:
        await self.next.backfill_schedule(replace(input, id=self._scope(input.id)))

    async def delete_schedule(self, input: DeleteScheduleInput) -> None:
        await self.next.delete_schedule(replace(input, id=self._scope(input.id)))

    async def describe_schedule(self, input: DescribeScheduleInput) -> ScheduleDescription:
        return await self.next.describe_schedule(replace(input, id=self._scope(input.id)))

    async def pause_schedule(self, input: PauseScheduleInput) -> None:
        await self.next.pause_schedule(replace(input, id=self._scope(input.id)))

    async def trigger_schedule(self, input: TriggerScheduleInput) -> None:
        await self.next.trigger_schedule(replace(input, id=self._scope(input.id)))

    async def unpause_schedule(self, input: UnpauseScheduleInput) -> None:
        await self.next.unpause_schedule(replace(input, id=self._scope(input.id)))

    async def update_schedule(self, input: UpdateScheduleInput) -> None:
        await self.next.update_schedule(replace(input, id=self._scope(input.id)))


async def ensure_namespace(client: Client, *, timeout: float = 15.0) -> bool:
    """Register ``client``'s namespace if the server does not have it; wait until it is usable.

    A dev server lets anyone register a namespace, so a learner's namespace
    appears on first use. A managed service (Temporal Cloud) does not: there the
    instructor creates the namespaces, and a missing one is reported plainly.

    Returns:
        Whether the namespace was registered by this call.

    Raises:
        ConfigurationError: the namespace is missing and the server refused to
            register it, or it did not become usable within ``timeout``.
    """
    namespace = client.namespace
    service = client.workflow_service
    try:
        await service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
        return False
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    registered = True
    try:
        await service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace,
                description=f"sagakit course: learner {namespace.removeprefix('learner-')}",
                workflow_execution_retention_period=Duration(
                    seconds=int(RETENTION.total_seconds())
                ),
            )
        )
    except RPCError as refused:
        if refused.status == RPCStatusCode.ALREADY_EXISTS:  # another kernel was first
            registered = False
        else:
            raise ConfigurationError(
                f"Namespace {namespace!r} does not exist on the Temporal server, and the server "
                f"refused to create it ({refused.message}). Ask your instructor to create it, "
                "or to give you a namespace with TEMPORAL_NAMESPACE."
            ) from refused

    async def usable() -> bool | None:
        # The frontend learns of a new namespace through a cache that refreshes every few
        # seconds; until then, calls in the namespace answer NOT_FOUND.
        try:
            await service.list_workflow_executions(
                ListWorkflowExecutionsRequest(namespace=namespace, page_size=1)
            )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return True

    await poll_until(
        usable,
        timeout=timeout,
        interval=0.25,
        what=f"namespace {namespace!r} to become usable",
        timed_out=lambda: ConfigurationError(
            f"Namespace {namespace!r} was registered but the server did not accept calls in it "
            f"within {timeout:g} s. Run the cell again in a few seconds."
        ),
    )
    return registered
