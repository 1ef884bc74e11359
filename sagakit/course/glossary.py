"""The course glossary: every term, its emoji, a one-line definition and where a lesson shows it.

This module is the one source of truth for the course's vocabulary. The glossary
notebook, the course index (``tools/navigation.py``) and the quiz
(:mod:`sagakit.course.quiz`) are all generated from :data:`TERMS`, and a test checks
that every term's link points at a heading that exists::

    >>> term("saga").label
    'saga 📜'
    >>> term("Worker").link
    '06-temporal-cluster-workers-workflows-activities.ipynb#Worker-👷'

A link is ``<notebook>#<anchor>``, where the anchor is the heading's text with
spaces turned into dashes: the id that JupyterLab and nbconvert give a Markdown
heading (see :func:`heading_anchor`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sagakit import ConfigurationError

__all__ = [
    "PARTS",
    "TERMS",
    "Part",
    "Term",
    "UnknownTermError",
    "heading_anchor",
    "notebook_headings",
    "term",
    "terms_in",
]

Part = Literal["distributed systems", "Temporal", "sagas"]
"""The three parts of the course, in the order they are taught."""

PARTS: tuple[Part, ...] = ("distributed systems", "Temporal", "sagas")
"""Every :data:`Part`, in course order."""


class UnknownTermError(ConfigurationError, KeyError):
    """A term was looked up by a name that the glossary does not have."""

    def __str__(self) -> str:
        # KeyError would quote the message; show it as written.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Term:
    """One glossary entry and the place in the course where it is demonstrated."""

    name: str
    """The term as the course writes it, e.g. ``"eventual consistency"`` or ``"Worker"``."""

    emoji: str
    """The emoji that stands for the term in every lesson, e.g. ``"🐌"``."""

    definition: str
    """One sentence in plain words."""

    notebook: str
    """File name of the lesson notebook (in ``notebooks/``) that demonstrates the term."""

    heading: str
    """Text of the Markdown heading in that notebook, without the leading ``#``."""

    part: Part
    """Which part of the course the term belongs to."""

    @property
    def label(self) -> str:
        """The name followed by the emoji, e.g. ``"retry 🔄"``."""
        return f"{self.name} {self.emoji}"

    @property
    def anchor(self) -> str:
        """The id of the heading in the rendered notebook (see :func:`heading_anchor`)."""
        return heading_anchor(self.heading)

    @property
    def link(self) -> str:
        """A relative link from one notebook to the heading: ``notebook#anchor``."""
        return f"{self.notebook}#{self.anchor}"

    @property
    def lesson(self) -> str:
        """The two-digit lesson number, taken from the notebook's file name, e.g. ``"07"``."""
        return self.notebook.split("-", 1)[0]


_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")


def heading_anchor(heading: str) -> str:
    """The id that JupyterLab and nbconvert give a Markdown heading.

    Both take the heading's visible text and turn every space into a dash
    (``"The CAP theorem 🧢"`` becomes ``"The-CAP-theorem-🧢"``); Markdown
    emphasis and code marks are not part of the visible text.

    Args:
        heading: the heading's text, with or without the leading ``#`` marks.
    """
    text = heading.strip().lstrip("#").strip()
    return _EMPHASIS.sub("", text).replace(" ", "-")


_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def notebook_headings(path: Path) -> list[str]:
    """The text of every Markdown heading in a notebook, in order (code blocks skipped).

    Args:
        path: the ``.ipynb`` file.
    """
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    headings = []
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        source = cell["source"]
        text = source if isinstance(source, str) else "".join(source)
        in_fence = False
        for line in text.splitlines():
            if _FENCE.match(line):
                in_fence = not in_fence
            elif not in_fence and (match := _HEADING.match(line)):
                headings.append(match.group(2))
    return headings


_L01 = "01-concurrency-scalability-reliability.ipynb"
_L02 = "02-consistency-and-cap.ipynb"
_L03 = "03-acid-transactions.ipynb"
_L04 = "04-durable-execution-idempotence-determinism.ipynb"
_L05 = "05-platform-application-event-sourcing.ipynb"
_L06 = "06-temporal-cluster-workers-workflows-activities.ipynb"
_L07 = "07-queries-signals-retries-history.ipynb"
_L08 = "08-compensating-actions.ipynb"
_L09 = "09-sagas.ipynb"
_L10 = "10-idempotency-keys.ipynb"
_L11 = "11-choreography-vs-orchestration.ipynb"

_DS: Part = "distributed systems"
_TE: Part = "Temporal"
_SA: Part = "sagas"

TERMS: tuple[Term, ...] = (
    Term(
        "concurrency",
        "↠",
        "Several pieces of work are in progress at the same time, so waits overlap "
        "instead of adding up.",
        _L01,
        "Concurrency ↠",
        _DS,
    ),
    Term(
        "scalability",
        "📈",
        "Adding machines or workers lets the system do proportionally more work, "
        "until a shared bottleneck caps it.",
        _L01,
        "Scalability 📈",
        _DS,
    ),
    Term(
        "reliability",
        "✅",
        "The system keeps doing its job correctly although some of its parts fail, "
        "thanks to retries and replicas.",
        _L01,
        "Reliability ✅",
        _DS,
    ),
    Term(
        "eventual consistency",
        "🐌",
        "Copies of the data may disagree for a while after a write, but they all "
        "converge once the writes stop.",
        _L02,
        "Eventual consistency 🐌",
        _DS,
    ),
    Term(
        "strong consistency",
        "💪",
        "Every read returns the most recent completed write, whichever copy of the data answers.",
        _L02,
        "Strong consistency 💪",
        _DS,
    ),
    Term(
        "CAP theorem",
        "🧢",
        "While the network is split, a replicated system must choose between answering "
        "and answering with the latest data.",
        _L02,
        "The CAP theorem 🧢",
        _DS,
    ),
    Term(
        "ACID",
        "🧪",
        "The four promises a database transaction makes: atomicity, consistency, "
        "isolation and durability.",
        _L03,
        "ACID 🧪",
        _DS,
    ),
    Term(
        "atomicity",
        "⚛️",
        "A transaction happens completely or not at all; a failure half-way leaves no trace.",
        _L03,
        "Atomicity ⚛️",
        _DS,
    ),
    Term(
        "isolation",
        "📦",
        "Transactions running at the same time behave as if they had run one after the other.",
        _L03,
        "Isolation 📦",
        _DS,
    ),
    Term(
        "durability",
        "🗿",
        "Once a transaction is confirmed, its changes survive crashes and power cuts.",
        _L03,
        "Durability 🗿",
        _DS,
    ),
    Term(
        "durable execution",
        "🔜",
        "A program's progress is recorded step by step, so after a crash it resumes "
        "where it was instead of starting over.",
        _L04,
        "Durable execution 🔜",
        _DS,
    ),
    Term(
        "idempotent function",
        "🥪",
        "Running it twice has the same effect as running it once, which makes it safe to retry.",
        _L04,
        "Idempotent function 🥪",
        _DS,
    ),
    Term(
        "deterministic function",
        "🧮",
        "Given the same inputs it always makes the same decisions and returns the same result.",
        _L04,
        "Deterministic function 🧮",
        _DS,
    ),
    Term(
        "platform",
        "💻",
        "The environment your code runs on (network, machines, services); its failures, "
        "such as a service being down, often pass on a retry.",
        _L05,
        "Platform 💻",
        _DS,
    ),
    Term(
        "application",
        "〉",
        "Your own code and its business rules; its failures (no stock, card declined) are "
        "answers that no retry will change.",
        _L05,
        "Application 〉",
        _DS,
    ),
    Term(
        "event sourcing",
        "🎤",
        "Store every change as an event in an append-only log and rebuild the state by "
        "replaying the events.",
        _L05,
        "Event sourcing 🎤",
        _DS,
    ),
    Term(
        "Temporal",
        "✧",
        "An open-source platform for durable execution: it records what your code did "
        "and keeps it going through failures.",
        _L06,
        "Temporal ✧",
        _TE,
    ),
    Term(
        "Worker",
        "👷",
        "Your process that polls a task queue on the Temporal server and runs workflow "
        "and activity code.",
        _L06,
        "Worker 👷",
        _TE,
    ),
    Term(
        "Workflow",
        "📖",
        "Deterministic code that decides what happens next and survives crashes by "
        "being replayed from its History.",
        _L06,
        "Workflow 📖",
        _TE,
    ),
    Term(
        "Activity",
        "💾",
        "A function that does the real work with the outside world and may fail, so "
        "Temporal retries it.",
        _L06,
        "Activity 💾",
        _TE,
    ),
    Term(
        "Query",
        "🙋",
        "A read-only question about a workflow's state, answered by a worker (which "
        "replays a closed run) and never recorded.",
        _L07,
        "Query 🙋",
        _TE,
    ),
    Term(
        "Signal",
        "🧑\u200d🏫",
        "A message sent into a running workflow, recorded in its History before the workflow sees it.",
        _L07,
        "Signal 🧑\u200d🏫",
        _TE,
    ),
    Term(
        "retry",
        "🔄",
        "Trying a failed step again, spaced out by a policy of intervals, backoff and attempt limits.",
        _L07,
        "retry 🔄",
        _TE,
    ),
    Term(
        "Cluster",
        "🏘️",
        "Temporal's server side, called the Temporal Service in today's docs: the services "
        "and database that keep Histories, queues and timers.",
        _L06,
        "Cluster 🏘️",
        _TE,
    ),
    Term(
        "History",
        "🗃️",
        "The append-only list of events the server records for one workflow run, from "
        "which the workflow is replayed.",
        _L07,
        "History 🗃️",
        _TE,
    ),
    Term(
        "compensating action",
        "↩️",
        "A step that semantically undoes an earlier, already committed step, such as "
        "a refund for a charge.",
        _L08,
        "Compensating action: the idea",
        _SA,
    ),
    Term(
        "saga",
        "📜",
        "A sequence of local steps, each with a compensating action, that either all "
        "complete or are undone in reverse.",
        _L09,
        "Saga",
        _SA,
    ),
    Term(
        "idempotency key",
        "🔑",
        "A unique identifier sent with a request so that the service performs it at "
        "most once, however often it is retried.",
        _L10,
        "Idempotency key 🔑",
        _SA,
    ),
    Term(
        "choreography",
        "💃",
        "Services coordinate by reacting to each other's events; no one component holds "
        "the whole plan.",
        _L11,
        "Choreography 💃: the trip as a chain of events",
        _SA,
    ),
    Term(
        "orchestration",
        "🎼",
        "One coordinator tells each service what to do and when, so the plan lives in one place.",
        _L11,
        "Orchestration 🎼: the trip as one workflow",
        _SA,
    ),
)
"""Every term of the course, in teaching order."""


def term(name: str) -> Term:
    """Look a term up by name, ignoring case and the emoji.

    Args:
        name: the term's name (``"CAP theorem"``, ``"cap theorem"``) or its label
            (``"CAP theorem 🧢"``).

    Raises:
        UnknownTermError: no term has that name.
    """
    wanted = name.strip().casefold()
    for entry in TERMS:
        if wanted in (entry.name.casefold(), entry.label.casefold()):
            return entry
    known = ", ".join(entry.name for entry in TERMS)
    raise UnknownTermError(
        f"The glossary has no term {name!r}. Use one of: {known} "
        "(or add the term to sagakit/course/glossary.py)."
    )


def terms_in(notebook: str) -> tuple[Term, ...]:
    """The terms that a lesson notebook demonstrates, in teaching order.

    Args:
        notebook: the notebook's file name, e.g. ``"03-acid-transactions.ipynb"``.
    """
    return tuple(entry for entry in TERMS if entry.notebook == notebook)
