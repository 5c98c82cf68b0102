"""Routing's use cases: the desk (triage, assignment, moves, queues) and the learned triage
(lessons, training, the model in use)."""

from sportello_routing.service.learning import (
    Learner,
    LearningMetrics,
    LearningRules,
    NotEnoughLessons,
    TrainingBusy,
)
from sportello_routing.service.router import NotFound, Router, RoutingMetrics, Stale

__all__ = [
    "Learner",
    "LearningMetrics",
    "LearningRules",
    "NotEnoughLessons",
    "NotFound",
    "Router",
    "RoutingMetrics",
    "Stale",
    "TrainingBusy",
]
