"""The learned triage's routes: the models (trained, measured, which is in use), training
on demand and rolling back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from sportello_routing.api.deps import LearnerDep, Model, refusing
from sportello_runtime.http import ApiError
from sportello_runtime.store import Document

learning = APIRouter(tags=["learned triage"])


class QualityOut(BaseModel):
    accuracy: float
    macro_f1: float
    examples: int
    per_class: list[dict[str, Any]]


class ModelOut(BaseModel):
    version: int
    trained_at: datetime
    trigger: str = Field(description="api, schedule or import")
    actor: str | None
    lessons: dict[str, int] = Field(description="Lessons learned from, per head")
    held_back: dict[str, int] = Field(description="Held-back tickets it was measured on")
    seconds: float
    size: int = Field(description="Bytes stored")
    quality: dict[str, QualityOut]
    compared_with: dict[str, Any] | None = Field(
        description="The model in use when it was trained, measured on the same tickets")
    activated: bool = Field(description="Whether it replaced the model in use when trained")
    verdict: str


class ModelsOut(BaseModel):
    in_use: int | None
    history: list[int] = Field(description="Models activated in turn; the last is in use, "
                                           "a rollback returns to the one before")
    models: list[ModelOut]


def model_out(doc: Document) -> ModelOut:
    return ModelOut(version=doc["_id"], **{k: v for k, v in doc.items() if k != "_id"})


class TrainIn(Model):
    actor: str | None = Field(default=None, max_length=100)


class RollbackIn(Model):
    reason: str = Field(min_length=1, max_length=200)
    actor: str | None = Field(default=None, max_length=100)


@learning.get("/triage/models", response_model=ModelsOut)
async def models(learner: LearnerDep) -> ModelsOut:
    """The models trained, newest first, with their quality and the one in use."""
    state = await learner.store.state()
    history = [int(v) for v in state.get("history") or []]
    return ModelsOut(in_use=history[-1] if history else None, history=history,
                     models=[model_out(d) for d in await learner.store.model_records()])


@learning.get("/triage/models/{version}", response_model=ModelOut)
async def one_model(version: Annotated[int, Path(ge=1, le=2**31 - 1)],
                    learner: LearnerDep) -> ModelOut:
    record = await learner.store.model_record(version)
    if record is None:
        raise ApiError(404, "not_found", f"no model {version}", field="version")
    return model_out(record)


@learning.post("/triage/model/train", response_model=ModelOut, status_code=201)
async def train(body: TrainIn, learner: LearnerDep) -> ModelOut:
    """Train a model now on the closed tickets' lessons; it is put in use only when it is not
    worse than the current one on the held-back tickets (the answer says which and why).
    409 while another training runs, or with too few lessons."""
    with refusing():
        return model_out(await learner.train(trigger="api", actor=body.actor))


@learning.post("/triage/model/rollback", response_model=ModelsOut)
async def roll_back(body: RollbackIn, learner: LearnerDep) -> ModelsOut:
    """Back to the model used before the current one (none, past the first): every replica
    switches."""
    with refusing():
        await learner.roll_back(actor=body.actor, reason=body.reason)
    return await models(learner)
