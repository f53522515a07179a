"""Stop requests (Ctrl-C, SIGTERM) that a long loop honours at a safe point.

A signal during a train step would otherwise raise KeyboardInterrupt anywhere, e.g. between
the step and the increment of its counter, and the work since the last checkpoint is lost.
`StopRequest` turns the first SIGINT/SIGTERM into a flag the loop reads after a whole step (the
trainer then saves a checkpoint and stops); a second signal stops at once, as before.
"""

import signal
import threading
from typing import Optional


class StopRequest:
    """Context manager: `requested` becomes the signal's name ("SIGINT"/"SIGTERM") on the
    first signal. Installs its handlers only in the main thread and when `enabled` (signals
    reach only the main thread; a multi-worker trainer keeps the default: a save needs every
    worker). The previous handlers are restored on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.requested: Optional[str] = None
        self._previous = {}

    def _handle(self, signum, frame):
        del frame
        self._restore()  # a second signal: the default behaviour, at once
        self.requested = signal.Signals(signum).name

    def _restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self):
        if self.enabled and threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        self._restore()
        return False
