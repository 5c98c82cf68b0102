"""Learned triage's rules, no I/O: what a closed ticket teaches (its text, the category and
the first-level group it ended with), which tickets are held back to measure models, when a
new model may replace the current one, and where a rollback goes.

The model itself (``sportello_routing.classifier``) is a computation over these lessons;
whether to train, what to compare and what to keep are decided here.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sportello_contracts.enums import SupportLevel
from sportello_contracts.events import TicketClosed
from sportello_routing.domain.assignment import Assignment
from sportello_routing.domain.classification import Prediction, Triage, TriagePolicy
from sportello_routing.domain.staff import Group, IllegalMove

HEADS = ("category", "group")
"""What a model guesses: the category, and the group at the first level."""

HELD_BACK_ONE_IN = 5


@dataclass(frozen=True)
class Lesson:
    """One closed ticket as a training example."""

    ticket_id: str
    text: str
    category: str
    group: str | None
    language: str | None
    learned_at: datetime
    """When it was recorded: the schedule counts the lessons since the last model."""

    def label(self, head: str) -> str | None:
        return self.category if head == "category" else self.group

    @property
    def document(self) -> str:
        return model_input(self.text, self.language)


def ticket_text(subject: str, description: str) -> str:
    return f"{subject}\n{description}".strip()


def model_input(text: str, language: str | None) -> str:
    """What the model reads: the ticket's text and its language as one more word, so that
    the same words can weigh differently in Italian and English tickets."""
    return f"{text}\nlanguage_{language}" if language else text


def first_level_group(a: Assignment) -> str | None:
    """The first-level group that held the ticket last: after a coordinator moved it
    between L1 groups, the one it should have gone to."""
    group = None
    for entry in a.history:
        if entry.get("to_level") == SupportLevel.L1.value and entry.get("to_group"):
            group = str(entry["to_group"])
    return group


def lesson_from(closed: TicketClosed, a: Assignment, now: datetime) -> Lesson | None:
    """What the closed ticket teaches: the category it ended with (corrections included),
    not the one it was first given. ``None`` when it has no text to learn from."""
    text = ticket_text(closed.subject, closed.description)
    if not text:
        return None
    return Lesson(closed.ticket_id, text, a.category, first_level_group(a), closed.language,
                  now)


def group_by_model(groups: Sequence[Group], result: Triage, prediction: Prediction | None,
                   policy: TriagePolicy) -> Group | None:
    """The first-level group the model guesses, taken only where its category guess would
    be (no hint or rule chose), at the same threshold, and only a first-level group that
    still exists; ``None`` leaves the choice to the category, as without a model."""
    if prediction is None or result.decided_by.kind not in ("model", "default"):
        return None
    if prediction.confidence < policy.model_threshold:
        return None
    return next((g for g in groups if g.id == prediction.label
                 and g.level is SupportLevel.L1), None)


def held_back(ticket_id: str) -> bool:
    """One ticket in five, always the same ones: no model learns from them, so every
    model is measured on the same tickets and their scores compare."""
    return hashlib.sha256(ticket_id.encode()).digest()[0] % HELD_BACK_ONE_IN == 0


@dataclass(frozen=True)
class TrainingSet:
    texts: tuple[str, ...]
    labels: tuple[str, ...]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.labels)))


def split_lessons(lessons: Iterable[Lesson]) -> tuple[list[Lesson], list[Lesson]]:
    """The lessons to learn from, and the held-back ones to measure on."""
    learning: list[Lesson] = []
    held: list[Lesson] = []
    for lesson in lessons:
        (held if held_back(lesson.ticket_id) else learning).append(lesson)
    return learning, held


def _labelled(lessons: Iterable[Lesson], head: str) -> TrainingSet:
    pairs = [(lesson.document, label) for lesson in lessons
             if (label := lesson.label(head)) is not None]
    return TrainingSet(tuple(t for t, _ in pairs), tuple(lab for _, lab in pairs))


def training_sets(lessons: Iterable[Lesson], *, min_per_class: int
                  ) -> dict[str, TrainingSet]:
    """Per head, the lessons whose label has at least ``min_per_class`` examples (a class
    seen twice cannot be learned, nor its confidence calibrated); a head with fewer than two
    such classes has nothing to choose between and is left out."""
    lessons = list(lessons)
    sets: dict[str, TrainingSet] = {}
    for head in HEADS:
        labelled = _labelled(lessons, head)
        counts = Counter(labelled.labels)
        kept = [(text, label) for text, label in zip(labelled.texts, labelled.labels,
                                                     strict=True)
                if counts[label] >= min_per_class]
        if len({label for _, label in kept}) >= 2:
            sets[head] = TrainingSet(tuple(t for t, _ in kept), tuple(lab for _, lab in kept))
    return sets


def measuring_sets(held: Iterable[Lesson]) -> dict[str, TrainingSet]:
    """Per head, every held-back lesson with a label: a class too rare to learn still
    counts, as a miss, as it would in use."""
    held = list(held)
    return {head: _labelled(held, head) for head in HEADS}


def training_due(new_lessons: int, *, retrain_after: int, total: int = 0,
                 refused_with: int | None = None) -> bool:
    """Enough tickets closed since the last model; and, when the last try was refused for
    too few lessons (``refused_with`` of them), at least one more since."""
    if new_lessons < retrain_after:
        return False
    return refused_with is None or total > refused_with


@dataclass(frozen=True)
class Quality:
    """A head's score on the held-back tickets."""

    accuracy: float
    macro_f1: float
    examples: int
    per_class: Mapping[str, float]


@dataclass(frozen=True)
class Verdict:
    activate: bool
    reason: str


def judge(candidate: Mapping[str, Quality], current: Mapping[str, Quality] | None) -> Verdict:
    """A new model replaces the current one only when, on the same held-back tickets, it is
    not worse at any head the current one has (macro-F1: every class counts, not only the
    busiest)."""
    if not candidate:
        return Verdict(False, "nothing to measure it on")
    if current is None:
        return Verdict(True, "the first model")
    for head, now in current.items():
        new = candidate.get(head)
        if new is None:
            return Verdict(False, f"it cannot guess the {head}, the current model can")
        if new.macro_f1 + 1e-9 < now.macro_f1:
            return Verdict(False, f"{head} macro-F1 {new.macro_f1:.3f} is below the current "
                                  f"{now.macro_f1:.3f}")
    return Verdict(True, "not worse than the current model on the held-back tickets")


def activated(history: Sequence[int], version: int) -> tuple[int, ...]:
    """The models activated in turn, newest last; the last is the one in use."""
    return (*[v for v in history if v != version], version)


def rolled_back(history: Sequence[int]) -> tuple[tuple[int, ...], int | None]:
    """One step back: the model in use leaves the history and the one before it returns
    (none, past the first)."""
    if not history:
        raise IllegalMove("there is no model to roll back")
    rest = tuple(history[:-1])
    return rest, (rest[-1] if rest else None)
