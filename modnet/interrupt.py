"""Ctrl-C handling of a training run: stop after the current step, checkpoint, then exit."""

from __future__ import annotations

from typing import Any


class _Interrupt:
    """Turn the first Ctrl-C (SIGINT) into a request to stop after the current step, so the
    checkpoint written on the way out is consistent; a second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        import signal

        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self) -> _Interrupt:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        import signal

        if self._previous is not None and not self.requested:
            signal.signal(signal.SIGINT, self._previous)
