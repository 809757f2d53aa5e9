"""TaskProgress, the one progress helper of the commands: plain lines off a terminal,
nothing when disabled, a second count beside the first, a task that starts on first use."""

from __future__ import annotations

import io

from rich.console import Console

from matdata.progress import LineProgress, TaskProgress


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=40), buf


def test_plain_lines_with_update_and_a_counter(monkeypatch) -> None:
    monkeypatch.setenv("MATDATA_PROGRESS_INTERVAL", "0")
    console, buf = _console()
    with TaskProgress("qa", console=console, unit="samples", total=10, counter="shards") as bar:
        assert isinstance(bar.progress, LineProgress)
        bar.advance(4, 1)
        bar.advance(6, 2)
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("qa 4/10 (40%)") and lines[0].endswith("1 shards")
    assert lines[-1].startswith("qa 10/10 (100%)") and lines[-1].endswith("3 shards")
    assert all(len(ln) > 40 for ln in lines)  # never cut at the console width

    console, buf = _console()
    with TaskProgress("predict", console=console, unit="images") as bar:
        assert bar.progress.tasks == []  # no task before the first report
        bar.update(0, 3)
        bar.update(2, 3)
        bar.update(3)
    lines = buf.getvalue().splitlines()
    assert lines[-1].startswith("predict 3/3 (100%)") and " images/s " in lines[-1]


def test_disabled_prints_nothing() -> None:
    console, buf = _console()
    with TaskProgress("ingest demo", console=console, enabled=False) as bar:
        bar.update(5, None)
        bar.advance(2)
    assert buf.getvalue() == ""
