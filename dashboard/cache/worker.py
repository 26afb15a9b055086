"""One background thread per kind of work (model loads, new graphs): it runs the queued calls in order, starts
when work arrives and ends when none is left, so an idle server holds no thread."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Serial:
    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._queue: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None

    def submit(self, call: Callable[[], None]) -> None:
        """Run `call` after everything queued before it."""
        with self._lock:
            self._queue.append(call)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._thread = None
                    return
                call = self._queue.pop(0)
            call()
