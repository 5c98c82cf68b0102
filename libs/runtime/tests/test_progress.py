"""The command lines' progress bar."""

from __future__ import annotations

import io

from sportello_runtime.progress import progress_bar


def test_the_bar_shows_done_total_share_and_rate_on_one_line() -> None:
    out = io.StringIO()
    bar = progress_bar("docs", width=10, out=out)
    bar(450, 1000)
    line = out.getvalue()
    assert line.startswith("\r[####      ] 450/1,000 docs (45%) ")
    assert line.endswith(" docs/s")
    bar(0, 0)  # nothing to do is all done
    assert "0/0 docs (100%)" in out.getvalue()
