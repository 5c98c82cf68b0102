"""The learned triage's use cases: learn from a closed ticket, train a model (on demand, on a
schedule, or from an export of a previous tool), keep it only when it measures no worse,
roll back, and keep this replica's model in use the one the desk activated.

Training takes seconds of CPU, so it runs in a worker process: the replica keeps routing
meanwhile. Replicas train one at a time (a lease), and each hears every activation on its
own queue (``triage.model_activated``) and loads the model from MongoDB.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from sportello_contracts import EventEnvelope, new_event, utc_now
from sportello_contracts.events import TicketClosed, TicketCreated, TriageModelActivated
from sportello_routing import domain
from sportello_routing.classifier import Settings, Trained, TriageModel, train_and_compare
from sportello_routing.domain import (
    PRODUCER,
    Group,
    Prediction,
    RoutingError,
    TrainingSet,
    Triage,
    TriagePolicy,
)
from sportello_routing.store import LearningStore, RoutingStore
from sportello_runtime.concurrency import retry_on_conflict
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.store import Document

log = logging.getLogger(__name__)


class TrainingBusy(RoutingError):
    """Another replica (or a command line) is training now."""


class NotEnoughLessons(RoutingError):
    pass


@dataclass(frozen=True)
class LearningRules:
    min_lessons: int = 50
    """Lessons needed (besides the held-back ones) before a first model is worth training."""
    retrain_after: int = 200
    """New lessons since the last training that make the schedule train again; 0: never."""
    min_per_class: int = 5
    lease: timedelta = timedelta(minutes=10)
    model: Settings = field(default_factory=Settings)


@dataclass
class LearningMetrics:
    decisions: Counter
    model_version: Gauge
    trainings: Counter
    training_seconds: Histogram
    guess_seconds: Histogram

    @classmethod
    def registered_on(cls, m: ServiceMetrics) -> LearningMetrics:
        return cls(
            decisions=m.counter("triage_decisions_total",
                                "New tickets' categories by what chose them (hint, rule, "
                                "model, default)", ["decided_by"]),
            model_version=m.gauge("triage_model_version",
                                  "The learned triage model this replica uses (0: none)"),
            trainings=m.counter("triage_trainings_total",
                                "Models trained, by outcome (activated, kept_current)",
                                ["outcome"]),
            training_seconds=m.histogram("triage_training_seconds",
                                         "CPU time of a model's training and measurement",
                                         buckets=(1, 5, 15, 30, 60, 120, 300, 900)),
            guess_seconds=m.histogram("triage_guess_seconds",
                                      "The model's guess for one new ticket",
                                      buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05)),
        )


class Learner:
    def __init__(self, store: LearningStore, desk: RoutingStore, metrics: LearningMetrics,
                 rules: LearningRules = LearningRules()) -> None:
        self.store = store
        self._desk = desk
        self.metrics = metrics
        self.rules = rules
        self.model: TriageModel | None = None
        self.version: int | None = None
        self._loading = asyncio.Lock()
        self._holder = f"{socket.gethostname()}:{os.getpid()}"

    # -- guessing ---------------------------------------------------------------------

    def triage(self, result: Triage, created: TicketCreated, policy: TriagePolicy,
               groups: Sequence[Group]) -> tuple[Triage, Group | None]:
        """Rules first: when neither the hint nor a rule chose the category, the model's
        guesses may, and may choose the first-level group (``None``: the category's)."""
        group = None
        if domain.needs_model(result):
            category_guess, group_guess = self.guess(domain.model_input(
                domain.ticket_text(created.subject, created.description),
                created.requester.language))
            result = domain.use_prediction(result, category_guess, policy)
            group = domain.group_by_model(groups, result, group_guess, policy)
        self.metrics.decisions.labels(result.decided_by.kind).inc()
        return result, group

    def guess(self, text: str) -> tuple[Prediction | None, Prediction | None]:
        """The model's category and first-level group for a new ticket (none without a
        model, or for a head it lacks)."""
        model, version = self.model, self.version
        if model is None or version is None:
            return None, None
        started = time.perf_counter()
        guesses = [model.predict(head, text) for head in domain.HEADS]
        self.metrics.guess_seconds.observe(time.perf_counter() - started)
        category, group = (Prediction(g[0], round(g[1], 4), version) if g else None
                           for g in guesses)
        return category, group

    # -- lessons ----------------------------------------------------------------------

    async def learn(self, closed: TicketClosed) -> bool:
        """A closed ticket teaches the category it ended with (after corrections)."""
        assignment = await self._desk.get(closed.ticket_id)
        if assignment is None:
            return False
        lesson = domain.lesson_from(closed, assignment, utc_now())
        if lesson is None:
            return False
        await self.store.add_lesson(lesson)
        return True

    async def corrected(self, ticket_id: str, category: str) -> None:
        """A correction after the ticket closed still teaches: its lesson is relabelled."""
        await self.store.correct_lesson(ticket_id, category)

    # -- training ---------------------------------------------------------------------

    async def train(self, *, trigger: str, actor: str | None = None) -> Document:
        """Train on every lesson but the held-back ones, measure the new model and the one in
        use on those, and activate the new one when it is not worse. The record says which
        and why."""
        started = utc_now()
        if not await self.store.claim_training(self._holder, started, self.rules.lease):
            raise TrainingBusy("a model is being trained now; try again when it is done")
        refused_with = None
        try:
            lessons = await self.store.lessons()
            learning, held = domain.split_lessons(lessons)
            training = domain.training_sets(learning, min_per_class=self.rules.min_per_class)
            if len(learning) < self.rules.min_lessons or not training:
                refused_with = len(lessons)
                raise NotEnoughLessons(
                    f"{len(learning)} lessons to learn from ({len(held)} more held back to "
                    f"measure); a model needs {self.rules.min_lessons}, with two categories "
                    f"or groups of {self.rules.min_per_class} or more")
            current = await self.store.active_version()
            current_model = await self.store.model_bytes(current) if current else None
            measuring = domain.measuring_sets(held)
            trained = await _in_worker(training, measuring, current_model, self.rules.model)
            verdict = domain.judge(trained.quality, trained.current_quality)
            version = await self.store.next_version()
            record = await self.store.add_model(_record(
                version, trained, verdict, trigger=trigger, actor=actor,
                current=current if current_model else None, at=started,
                held={head: len(kept.texts) for head, kept in measuring.items()},
            ), trained.model)
            self.metrics.training_seconds.observe(trained.seconds)
            self.metrics.trainings.labels(
                "activated" if verdict.activate else "kept_current").inc()
            if verdict.activate:
                await self.activate(version, reason=f"trained ({trigger}): {verdict.reason}")
            log.info("triage model %s trained on %s lessons in %.1f s: %s", version,
                     trained.lessons, trained.seconds, verdict.reason)
            return record
        finally:
            await self.store.end_training(self._holder, utc_now(), refused_with=refused_with)

    async def train_if_due(self) -> None:
        """The schedule: train again once enough tickets closed since the last training."""
        if self.rules.retrain_after <= 0:
            return
        state = await self.store.state()
        new = await self.store.count_lessons(since=state.get("last_trained_at"))
        total = await self.store.count_lessons() if state.get("refused_with") else new
        if not domain.training_due(new, retrain_after=self.rules.retrain_after, total=total,
                                   refused_with=state.get("refused_with")):
            return
        try:
            await self.train(trigger="schedule")
        except (TrainingBusy, NotEnoughLessons) as exc:
            log.info("scheduled training skipped: %s", exc)

    # -- the model in use -------------------------------------------------------------

    async def activate(self, version: int, *, reason: str) -> None:
        async def step() -> None:
            history = (await self.store.state()).get("history") or []
            await self.store.set_history(history, domain.activated(history, version),
                                         self._announcement(version, history, reason))

        await retry_on_conflict(step, what="the model in use")
        await self.refresh()

    async def roll_back(self, *, actor: str | None, reason: str) -> int | None:
        """Back to the model used before this one (none, past the first)."""
        async def step() -> int | None:
            history = (await self.store.state()).get("history") or []
            rest, back_to = domain.rolled_back(history)
            await self.store.set_history(history, rest, self._announcement(
                back_to, history, f"rolled back by {actor or 'an operator'}: {reason}"))
            return back_to

        back_to = await retry_on_conflict(step, what="the model in use")
        await self.refresh()
        return back_to

    def _announcement(self, version: int | None, history: Sequence[int],
                      reason: str) -> EventEnvelope:
        previous = int(history[-1]) if history else None
        payload = TriageModelActivated(version=version, previous_version=previous,
                                       reason=reason[:200], at=utc_now())
        return new_event(payload, producer=PRODUCER, correlation_id=f"triage-model-{version}")

    async def refresh(self) -> None:
        """Use the model the desk activated (read from MongoDB: announcements may arrive out
        of order, the record of what is active cannot)."""
        async with self._loading:
            version = await self.store.active_version()
            if version == self.version:
                return
            model = None
            if version is not None:
                data = await self.store.model_bytes(version)
                if data is None:
                    log.error("triage model %s is active but not stored whole", version)
                    return
                model = await asyncio.to_thread(TriageModel.from_bytes, data)
            self.model, self.version = model, version
            self.metrics.model_version.set(version or 0)
            log.info("triage model in use: %s", version)

    async def on_event(self, envelope: EventEnvelope) -> None:
        """This replica's queue: another replica (or this one) activated a model."""
        await self.refresh()

    async def on_bound(self, lost_at: float | None) -> None:
        """Bound (again): an activation may have passed while unbound."""
        await self.refresh()


async def _in_worker(training: dict[str, TrainingSet], held: dict[str, TrainingSet],
                     current: bytes | None, settings: Settings) -> Trained:
    """A process of its own for the seconds of CPU, started for this training and gone
    after it: the replica's event loop keeps routing tickets meanwhile."""
    with ProcessPoolExecutor(max_workers=1,
                             mp_context=multiprocessing.get_context("spawn")) as worker:
        return await asyncio.get_running_loop().run_in_executor(
            worker, train_and_compare, training, held, current, settings)


def _record(version: int, trained: Trained, verdict: domain.Verdict, *, trigger: str,
            actor: str | None, current: int | None, at: Any,
            held: dict[str, int]) -> Document:
    return {
        "_id": version, "trained_at": at, "trigger": trigger, "actor": actor,
        "lessons": trained.lessons, "held_back": held, "seconds": trained.seconds,
        "quality": _qualities(trained.quality),
        "compared_with": ({"version": current,
                           "quality": _qualities(trained.current_quality or {})}
                          if current else None),
        "activated": verdict.activate, "verdict": verdict.reason,
    }


def _qualities(quality: dict[str, domain.Quality]) -> Document:
    """Per class as a list: a class name (from an imported export) may hold a dot, which a
    MongoDB key may not."""
    return {head: {**asdict(q), "per_class": [{"label": label, "f1": f1}
                                              for label, f1 in q.per_class.items()]}
            for head, q in quality.items()}
