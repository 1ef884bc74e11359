"""The glossary is the one source of truth for the course's terms; its links and quiz must work."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from sagakit import SagakitError
from sagakit.course.glossary import (
    PARTS,
    TERMS,
    Term,
    UnknownTermError,
    heading_anchor,
    notebook_headings,
    term,
    terms_in,
)
from sagakit.course.quiz import (
    Grade,
    QuizError,
    QuizOptions,
    QuizSession,
    grade,
    make_quiz,
    quiz_widget,
)
from tests.helpers import ROOT

NOTEBOOKS = ROOT / "notebooks"
GLOSSARY_NOTEBOOK = NOTEBOOKS / "99-glossary.ipynb"

# The 25 terms and their emoji, exactly as the lessons write them.
GUIDE = {
    "concurrency": "↠",
    "scalability": "📈",
    "reliability": "✅",
    "eventual consistency": "🐌",
    "strong consistency": "💪",
    "CAP theorem": "🧢",
    "ACID": "🧪",
    "atomicity": "⚛️",
    "isolation": "📦",
    "durability": "🗿",
    "durable execution": "🔜",
    "idempotent function": "🥪",
    "deterministic function": "🧮",
    "platform": "💻",
    "application": "〉",
    "event sourcing": "🎤",
    "Temporal": "✧",
    "Worker": "👷",
    "Workflow": "📖",
    "Activity": "💾",
    "Query": "🙋",
    "Signal": "🧑\u200d🏫",
    "retry": "🔄",
    "Cluster": "🏘️",
    "History": "🗃️",
}
PART_III = ["compensating action", "saga", "idempotency key", "choreography", "orchestration"]


def test_the_25_terms_and_part_iii() -> None:
    assert {t.name: t.emoji for t in TERMS if t.part != "sagas"} == GUIDE
    assert [t.name for t in TERMS if t.part == "sagas"] == PART_III
    assert [t.part for t in TERMS] == sorted((t.part for t in TERMS), key=PARTS.index)


def test_names_labels_and_emoji_are_unique() -> None:
    for attribute in ("name", "emoji", "label"):
        values = [getattr(t, attribute) for t in TERMS]
        assert len(set(values)) == len(values), attribute


def test_definitions_are_one_line_sentences() -> None:
    for t in TERMS:
        assert "\n" not in t.definition, t.name
        assert t.definition.endswith("."), t.name
        assert 30 < len(t.definition) <= 140, f"{t.name}: keep the definition to one line"
        assert t.name.casefold() not in t.definition.casefold(), f"{t.name}: defined by itself"


def test_terms_are_frozen() -> None:
    with pytest.raises(AttributeError):
        TERMS[0].name = "parallelism"  # type: ignore[misc]


def test_lookup_by_name_or_label_ignores_case() -> None:
    assert term("cap theorem") is term("CAP theorem 🧢")
    assert term("Signal 🧑\u200d🏫").name == "Signal"
    assert terms_in("03-acid-transactions.ipynb") == tuple(
        term(n) for n in ("ACID", "atomicity", "isolation", "durability")
    )


def test_unknown_term_says_what_exists() -> None:
    with pytest.raises(UnknownTermError, match=r"no term 'parallelism'.*eventual consistency"):
        term("parallelism")
    assert issubclass(UnknownTermError, SagakitError)
    assert issubclass(UnknownTermError, KeyError)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("## The CAP theorem 🧢", "The-CAP-theorem-🧢"),
        ("Signal 🧑\u200d🏫", "Signal-🧑\u200d🏫"),
        ("### `Saga` in **practice**", "Saga-in-practice"),
    ],
)
def test_heading_anchor_is_what_jupyter_renders(heading: str, anchor: str) -> None:
    assert heading_anchor(heading) == anchor


def test_headings_in_code_blocks_do_not_count(tmp_path: Path) -> None:
    path = tmp_path / "x.ipynb"
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# Title\n```\n# not a heading\n```"},
        {"cell_type": "code", "metadata": {}, "source": "# a comment", "outputs": []},
        {"cell_type": "markdown", "metadata": {}, "source": ["text\n", "## Two 🐌\n"]},
    ]
    path.write_text(json.dumps({"cells": cells}))
    assert notebook_headings(path) == ["Title", "Two 🐌"]


@pytest.mark.parametrize("entry", TERMS, ids=lambda t: t.name)
def test_link_target_exists(entry: Term) -> None:
    path = NOTEBOOKS / entry.notebook
    if not path.exists():
        pytest.skip(f"{entry.notebook} is not written yet: cannot check {entry.label}")
    headings = notebook_headings(path)
    assert entry.anchor in [heading_anchor(h) for h in headings], (
        f"{entry.notebook} has no heading {entry.heading!r} for {entry.label}. Its headings: "
        f"{headings}. Fix the heading in sagakit/course/glossary.py (or in the notebook)."
    )


def test_normalized_emoji() -> None:
    # A different Unicode spelling of an emoji would break the anchors silently.
    for t in TERMS:
        assert unicodedata.normalize("NFC", t.heading) == t.heading


def test_glossary_notebook_lists_every_term_with_its_link() -> None:
    cells = json.loads(GLOSSARY_NOTEBOOK.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for t in TERMS:
        assert f"**{t.name}** {t.emoji} | {t.definition} |" in text, t.name
        assert f"]({t.link})" in text, t.name


def test_glossary_notebook_shows_the_quiz_and_a_graded_answer() -> None:
    cells = json.loads(GLOSSARY_NOTEBOOK.read_text())["cells"]
    outputs = [o for c in cells if c["cell_type"] == "code" for o in c["outputs"]]
    texts = ["".join(o.get("data", {}).get("text/plain", o.get("text", ""))) for o in outputs]
    first = make_quiz(QuizOptions(seed=1701))[0]
    assert any(first.definition in t and "Question 1 of 5" in t for t in texts)
    assert any(grade(first, first.answer).message in t for t in texts)


# The quiz


def test_quiz_is_seeded() -> None:
    assert make_quiz(QuizOptions(seed=1)) == make_quiz(QuizOptions(seed=1))
    assert make_quiz(QuizOptions(seed=1)) != make_quiz(QuizOptions(seed=2))


@pytest.mark.parametrize("seed", range(20))
def test_every_question_has_one_right_answer_among_distinct_choices(seed: int) -> None:
    questions = make_quiz(QuizOptions(questions=8, choices=4, seed=seed))
    assert len({q.term for q in questions}) == 8
    for q in questions:
        assert len(set(q.choices)) == 4
        assert q.choices.count(q.answer) == 1
        assert sum(grade(q, c).correct for c in q.choices) == 1


def test_wrong_choices_come_from_the_same_part() -> None:
    for q in make_quiz(QuizOptions(questions=len(TERMS), seed=3)):
        assert {term(c).part for c in q.choices} == {q.term.part}


def test_grade_messages_point_at_the_lesson() -> None:
    q = make_quiz()[0]
    wrong = next(c for c in q.choices if c != q.answer)
    right, bad = grade(q, q.answer), grade(q, wrong)
    assert right.correct
    assert right.message.startswith("✓")
    assert f"lesson {q.term.lesson}" in right.message
    assert not bad.correct
    assert bad.message.startswith("✗")
    assert wrong in bad.message
    assert q.answer in bad.message


def test_impossible_quizzes_and_answers_are_refused() -> None:
    with pytest.raises(QuizError, match="at most"):
        make_quiz(QuizOptions(questions=len(TERMS) + 1))
    with pytest.raises(QuizError, match="at least"):
        make_quiz(QuizOptions(choices=1))
    with pytest.raises(QuizError, match="not one of this question's choices"):
        grade(make_quiz()[0], "parallelism")


def test_session_keeps_score_until_the_end() -> None:
    session = QuizSession(make_quiz(QuizOptions(questions=3)))
    results: list[Grade] = []
    results.append(session.answer(session.current.answer))
    wrong = next(c for c in session.current.choices if c != session.current.answer)
    results.append(session.answer(wrong))
    assert session.progress() == "Question 3 of 3"
    results.append(session.answer(session.current.answer))
    assert [r.correct for r in results] == [True, False, True]
    assert session.finished
    assert session.score == 2
    assert session.progress() == "Finished: 2 of 3 right."
    with pytest.raises(QuizError, match="quiz is over"):
        session.answer("saga 📜")


def test_widget_buttons_grade_and_move_on() -> None:
    view = quiz_widget(QuizOptions(questions=2, seed=11))
    first = view.session.current
    assert "Question 1 of 2" in repr(view)
    assert first.definition in repr(view)
    assert [b.description for b in view.buttons] == list(first.choices)
    view.click(first.answer)
    assert view.feedback.value.startswith("✓ Right")
    assert "Score: 1 of 1" in view.feedback.value
    assert all(b.disabled for b in view.buttons)
    with pytest.raises(QuizError, match="No active button"):
        view.click(first.answer)
    view.next_button.click()
    second = view.session.current
    assert second.definition in view.definition.value
    view.click(next(c for c in second.choices if c != second.answer))
    assert view.feedback.value.startswith("✗")
    assert "Score: 1 of 2" in view.feedback.value
    view.next_button.click()
    assert "Finished: 1 of 2 right." in view.progress.value
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("Glossary quiz. Question 1 of 2")
