"""The typed dependency on what a service's wiring put in the app's state."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi import FastAPI, Request

from sportello_runtime.http import from_state


@dataclass
class Library:
    name: str


def request_of(app: FastAPI) -> Request:
    return Request({"type": "http", "app": app, "headers": [], "method": "GET", "path": "/"})


def test_it_answers_the_use_case_wire_put_there_and_refuses_another_type() -> None:
    app = FastAPI()
    app.state.library = Library("kb")
    assert from_state(Library, "library")(request_of(app)) == Library("kb")
    app.state.library = "not a library"
    with pytest.raises(TypeError, match="not Library"):
        from_state(Library, "library")(request_of(app))
    assert from_state(Library, "library").__name__ == "library_of"
