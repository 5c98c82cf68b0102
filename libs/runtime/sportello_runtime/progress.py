"""A progress bar with the rate, for the command lines that walk many records (reindex,
rebuild, import)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def progress_bar(unit: str, *, width: int = 30,
                 out: TextIO | None = None) -> Callable[[int, int], None]:
    """``bar(done, total)`` redraws one line: ``[####    ] 450/1,000 docs (45%) 3,210 docs/s``;
    the rate counts from the bar's creation."""
    started = time.monotonic()
    stream = out or sys.stderr

    def bar(done: int, total: int) -> None:
        share = done / total if total else 1.0
        rate = done / max(time.monotonic() - started, 1e-6)
        stream.write(f"\r[{'#' * int(share * width):<{width}}] {done:,}/{total:,} {unit} "
                     f"({share:.0%}) {rate:,.0f} {unit}/s")
        stream.flush()

    return bar
