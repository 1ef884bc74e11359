"""A seeded self-quiz on the glossary: read a definition, pick the term.

The logic is plain Python, so it is tested without a browser and works in a
read-only copy of the notebook::

    >>> questions = make_quiz()
    >>> first = questions[0]
    >>> grade(first, first.answer).correct
    True

:class:`QuizSession` keeps the score as questions are answered, and
:func:`quiz_widget` puts a session behind ipywidgets buttons (one per choice,
then "Next question"). The same seed always gives the same questions, in the
same order, with the same choices.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sagakit import ConfigurationError, SagakitError
from sagakit.course.glossary import TERMS, Term

__all__ = [
    "DEFAULT_QUIZ_SEED",
    "Grade",
    "MissingExtraError",
    "Question",
    "QuizError",
    "QuizOptions",
    "QuizSession",
    "QuizView",
    "grade",
    "make_quiz",
    "quiz_widget",
]

DEFAULT_QUIZ_SEED = 1701
"""The seed the glossary notebook uses, so its questions are the same on every run."""


class QuizError(ConfigurationError):
    """A quiz was set up or answered in a way that does not make sense."""


class MissingExtraError(SagakitError, ImportError):
    """An optional dependency that this feature needs is not installed."""


@dataclass(frozen=True)
class QuizOptions:
    """How many questions a quiz has, how many choices each, and its seed."""

    questions: int = 5
    """Number of questions; each asks for a different term."""

    choices: int = 4
    """Choices per question: the right term and ``choices - 1`` others."""

    seed: int = DEFAULT_QUIZ_SEED
    """Seed of the random generator that picks and shuffles the terms."""


@dataclass(frozen=True)
class Question:
    """A definition and the terms to choose from; exactly one of them is right."""

    term: Term
    """The term being defined: the right answer."""

    choices: tuple[str, ...]
    """Term labels (name and emoji) in the order they are offered."""

    @property
    def definition(self) -> str:
        """The definition the learner sees."""
        return self.term.definition

    @property
    def answer(self) -> str:
        """The label of the right choice."""
        return self.term.label

    def text(self) -> str:
        """The question as plain text: the definition, then the lettered choices."""
        lines = [f"“{self.definition}”"]
        lines += [f"  ({chr(ord('a') + i)}) {choice}" for i, choice in enumerate(self.choices)]
        return "\n".join(lines)


@dataclass(frozen=True)
class Grade:
    """The verdict on one answer, with a sentence that says why."""

    question: Question
    """The question that was answered."""

    chosen: str
    """The label the learner picked."""

    @property
    def correct(self) -> bool:
        """Whether the chosen label is the right one."""
        return self.chosen == self.question.answer

    @property
    def message(self) -> str:
        """Feedback in plain words, pointing at the lesson that demonstrates the term."""
        right = self.question.term
        where = f"lesson {right.lesson}, “{right.heading}”"
        if self.correct:
            return f"✓ Right: that is {right.label}. Shown in {where}."
        return f"✗ Not quite: you picked {self.chosen}; this defines {right.label} (see {where})."


def make_quiz(
    options: QuizOptions = QuizOptions(),
    terms: Sequence[Term] = TERMS,
) -> tuple[Question, ...]:
    """Pick seeded questions: each shows one term's definition and asks which term it is.

    The wrong choices come from the same part of the course as the right one
    when it has enough terms, so the choices are plausible.

    Args:
        options: number of questions and choices, and the seed.
        terms: the terms to ask about (default: the whole glossary).

    Raises:
        QuizError: the options ask for more questions or choices than there are terms.
    """
    if options.questions < 1 or options.choices < 2:
        raise QuizError(
            f"A quiz needs at least 1 question and 2 choices, not {options.questions} and "
            f"{options.choices}. Raise QuizOptions.questions or QuizOptions.choices."
        )
    if options.questions > len(terms) or options.choices > len(terms):
        raise QuizError(
            f"Cannot ask {options.questions} questions with {options.choices} choices from "
            f"{len(terms)} terms. Ask for at most {len(terms)} of each, or pass more terms."
        )
    rng = random.Random(options.seed)
    asked = rng.sample(list(terms), options.questions)
    questions = []
    for right in asked:
        same_part = [t for t in terms if t.part == right.part and t != right]
        others = same_part if len(same_part) >= options.choices - 1 else list(terms)
        others = [t for t in others if t != right]
        choices = [right, *rng.sample(others, options.choices - 1)]
        rng.shuffle(choices)
        questions.append(Question(term=right, choices=tuple(t.label for t in choices)))
    return tuple(questions)


def grade(question: Question, chosen: str) -> Grade:
    """Grade one answer.

    Args:
        question: the question being answered.
        chosen: one of ``question.choices``.

    Raises:
        QuizError: ``chosen`` is not one of the question's choices.
    """
    if chosen not in question.choices:
        raise QuizError(
            f"{chosen!r} is not one of this question's choices. Pick one of: "
            + ", ".join(repr(c) for c in question.choices)
        )
    return Grade(question=question, chosen=chosen)


@dataclass
class QuizSession:
    """A quiz being taken: the current question, the answers given and the score."""

    questions: tuple[Question, ...]
    """The questions, in order."""

    grades: list[Grade] = field(default_factory=list)
    """One grade per question answered so far."""

    @property
    def finished(self) -> bool:
        """Whether every question has been answered."""
        return len(self.grades) == len(self.questions)

    @property
    def current(self) -> Question:
        """The question waiting for an answer.

        Raises:
            QuizError: every question has been answered.
        """
        if self.finished:
            raise QuizError("The quiz is over: every question has been answered. Start a new one.")
        return self.questions[len(self.grades)]

    @property
    def score(self) -> int:
        """How many answers so far were right."""
        return sum(g.correct for g in self.grades)

    def answer(self, chosen: str) -> Grade:
        """Grade ``chosen`` for the current question and move on to the next one.

        Raises:
            QuizError: the quiz is over, or ``chosen`` is not one of the choices.
        """
        result = grade(self.current, chosen)
        self.grades.append(result)
        return result

    def progress(self) -> str:
        """``"Question 2 of 5"`` while answering, the final score when finished."""
        if self.finished:
            return f"Finished: {self.score} of {len(self.questions)} right."
        return f"Question {len(self.grades) + 1} of {len(self.questions)}"

    def text(self) -> str:
        """The current state as plain text: what a read-only copy of the notebook shows."""
        if self.finished:
            return f"Glossary quiz. {self.progress()}"
        return (
            f"Glossary quiz. {self.progress()}: which term is this?\n{self.current.text()}\n"
            "(In a live notebook, click a term. Here, call grade(question, choice).)"
        )


class QuizView:
    """The quiz as ipywidgets: a live widget in Jupyter, the question as text elsewhere.

    Its ``text/plain`` form is the current question (what nbval compares and a
    read-only viewer shows); in JupyterLab the buttons are live.
    """

    def __init__(self, session: QuizSession, widgets: Any) -> None:
        self.session = session
        """The quiz state behind the buttons."""
        self._w = widgets
        self.progress = widgets.HTML()
        """Shows "Question n of m" or the final score."""
        self.definition = widgets.HTML()
        """Shows the definition to match."""
        self.buttons: list[Any] = []
        """One button per choice of the current question."""
        self.choices = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        """Holds the choice buttons."""
        self.feedback = widgets.HTML()
        """Shows the verdict on the last answer."""
        self.next_button = widgets.Button(description="Next question", disabled=True)
        """Moves on once the current question is answered."""
        self.next_button.on_click(lambda _button: self._show_question())
        self.box = widgets.VBox(
            [self.progress, self.definition, self.choices, self.feedback, self.next_button]
        )
        """The whole widget."""
        self._text = session.text()
        self._show_question()

    def click(self, label: str) -> Grade:
        """Press the button of the choice ``label``, exactly as a click in the browser does.

        Raises:
            QuizError: no button has that label (it is not a choice, or already answered).
        """
        for button in self.buttons:
            if button.description == label and not button.disabled:
                button.click()
                return self.session.grades[-1]
        raise QuizError(
            f"No active button {label!r}. Pick one of: "
            + ", ".join(repr(b.description) for b in self.buttons if not b.disabled)
        )

    def _show_question(self) -> None:
        self.progress.value = f"<b>{self.session.progress()}</b>"
        self.feedback.value = ""
        self.next_button.disabled = True
        if self.session.finished:
            self.definition.value = ""
            self.buttons = []
            self.choices.children = ()
            return
        question = self.session.current
        self.definition.value = f"Which term is this? <i>“{question.definition}”</i>"
        self.buttons = [self._w.Button(description=label) for label in question.choices]
        for button in self.buttons:
            button.on_click(self._on_choice(button.description))
        self.choices.children = tuple(self.buttons)

    def _on_choice(self, label: str) -> Callable[[Any], None]:
        def handler(_button: Any) -> None:
            result = self.session.answer(label)
            for button in self.buttons:
                button.disabled = True
                if button.description == result.question.answer:
                    button.button_style = "success"
                elif button.description == label:
                    button.button_style = "danger"
            self.feedback.value = (
                f"{result.message} Score: {self.session.score} of {len(self.session.grades)}."
            )
            self.next_button.disabled = False
            if self.session.finished:
                self.next_button.description = "Show score"

        return handler

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = self.box._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = self._text
        return bundle

    def __repr__(self) -> str:
        return self._text


def quiz_widget(
    options: QuizOptions = QuizOptions(),
    terms: Sequence[Term] = TERMS,
) -> QuizView:
    """A fresh seeded quiz behind ipywidgets buttons, ready to display in a notebook.

    Args:
        options: number of questions and choices, and the seed.
        terms: the terms to ask about (default: the whole glossary).

    Raises:
        MissingExtraError: ipywidgets is not installed.
        QuizError: the options do not fit the terms (see :func:`make_quiz`).
    """
    try:
        import ipywidgets  # type: ignore[import-untyped]
    except ImportError as error:
        raise MissingExtraError(
            "The quiz widget needs ipywidgets. Install it with "
            "`python -m pip install 'ipywidgets>=8.1,<9'` (or `pip install -e '.[course]'`), "
            "then restart the kernel."
        ) from error
    return QuizView(QuizSession(make_quiz(options, terms)), ipywidgets)
