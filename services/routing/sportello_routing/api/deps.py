"""What the routes share: the use cases they reach, the refusals turned into HTTP errors,
and the strict request model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Path
from pydantic import BaseModel, ConfigDict

from sportello_routing.domain import IllegalMove, InvalidPolicy, RoutingError
from sportello_routing.service import (
    Learner,
    NotEnoughLessons,
    NotFound,
    Router,
    Stale,
    TrainingBusy,
)
from sportello_runtime.concurrency import ConcurrencyConflict
from sportello_runtime.http import ApiError, from_state

SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
Slug = Annotated[str, Path(pattern=SLUG)]

RouterDep = Annotated[Router, Depends(from_state(Router, "router"))]
LearnerDep = Annotated[Learner, Depends(from_state(Learner, "learner"))]


@contextmanager
def refusing() -> Iterator[None]:
    """Turn the rules' refusals into clear HTTP errors."""
    try:
        yield
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc), field=exc.field) from exc
    except Stale as exc:
        raise ApiError(409, "conflict", str(exc), field=exc.field,
                       extra={"version": exc.current.version}) from exc
    except InvalidPolicy as exc:
        raise ApiError(422, "invalid", str(exc), field=exc.field) from exc
    except IllegalMove as exc:
        raise ApiError(409, "illegal_move", str(exc), field=exc.field) from exc
    except ConcurrencyConflict as exc:
        raise ApiError(409, "conflict", f"changed meanwhile: {exc}") from exc
    except TrainingBusy as exc:
        raise ApiError(409, "busy", str(exc), headers={"Retry-After": "30"}) from exc
    except NotEnoughLessons as exc:
        raise ApiError(409, "not_enough_lessons", str(exc)) from exc
    except RoutingError as exc:
        raise ApiError(409, "refused", str(exc), field=exc.field) from exc


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")
