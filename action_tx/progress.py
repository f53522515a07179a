"""The one progress bar of every loop, in the tools and the library. Free of TensorFlow, so that
tools can show it before TF loads.

On a terminal it redraws one line with a carriage return. When its stream is not a terminal
(a log file, a pipe, CI) it prints a plain line at most every `interval` seconds and one at the
end instead, so a log holds a readable line every few seconds rather than every update joined
by carriage returns on one line.

    bar = Progress(total, "eval", unit="keyframes")
    for batch in dataset:
        ...
        bar.update(len(batch))        # n more done; or bar.set(done, note="loss 0.52")
    bar.close()

A line: `eval [#########.....................] 120/400 keyframes  3.10/s  eta 0:01:30`
(no bar and no eta when the total is unknown; `took H:MM:SS` once the total is reached).
"""

import sys
import time
from typing import Callable, Optional, TextIO


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a stream without isatty, or a closed one
        return False


def _clock_text(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Progress of a loop over `total` units, written to `stream` (see the module docstring).

    Args:
      total: units expected; None or 0: unknown (count and rate only).
      label: what runs; first on the line.
      enabled: False: writes nothing (the count is still kept in `done`).
      unit: the units' name after the count ("keyframes", "steps"); "" for none.
      start: units done before this run (a resumed training's step): `done` starts there, and
        the rate and eta count only what this run does.
      stream: where to write; default sys.stderr (looked up when the bar is made).
      interval: seconds between plain lines when `stream` is not a terminal.
      terminal: whether `stream` is a terminal; None: `stream.isatty()`.
      clock: monotonic seconds (a test passes a fake one).
      width: characters of the bar.
    """

    def __init__(
        self,
        total: Optional[int],
        label: str,
        enabled: bool = True,
        *,
        unit: str = "",
        start: int = 0,
        stream: Optional[TextIO] = None,
        interval: float = 5.0,
        terminal: Optional[bool] = None,
        clock: Callable[[], float] = time.monotonic,
        width: int = 30,
    ):
        self.total, self.label, self.enabled, self.unit = total, label, enabled, unit
        self.start = self.done = start
        self.stream = stream if stream is not None else sys.stderr
        self.interval, self.clock, self.width = interval, clock, width
        self.terminal = _is_terminal(self.stream) if terminal is None else terminal
        self.note = ""
        self._t0 = self._last_line = clock()
        self._drawn = 0  # length of the line drawn on the terminal (0: none)
        self._printed = None  # `done` of the last plain line
        self._closed = False

    def update(self, n: int = 1, note: Optional[str] = None) -> None:
        """`n` more units done; `note` (e.g. "loss 0.52") replaces the end of the line."""
        self.set(self.done + n, note)

    def set(self, done: int, note: Optional[str] = None) -> None:
        """`done` units done in all; `note` as in `update`."""
        self.done = done
        if note is not None:
            self.note = note
        if not self.enabled or self._closed:
            return
        if self.terminal:
            self._draw()
            return
        now = self.clock()
        finished = bool(self.total) and done >= self.total and self._printed != done
        if finished or now - self._last_line >= self.interval:
            self._print(now)

    def newline(self) -> None:
        """Ends the line drawn on a terminal, so that other output starts on a line of its
        own; the next update draws a new one. Nothing to do elsewhere."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0

    def close(self) -> None:
        """Ends the bar: on a terminal the line is ended; elsewhere the final state is printed
        unless its line was the last one printed. Later calls do nothing."""
        if self._closed or not self.enabled:
            self._closed = True
            return
        if self.terminal:
            self.newline()
        elif self._printed != self.done:
            self._print(self.clock())
        self._closed = True

    def line(self) -> str:
        """The current line (no carriage return, no newline)."""
        elapsed = max(self.clock() - self._t0, 1e-9)
        rate = (self.done - self.start) / elapsed
        unit = f" {self.unit}" if self.unit else ""
        parts = [self.label]
        if self.total:
            filled = self.width * min(max(self.done, 0), self.total) // self.total
            parts.append(
                f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total}{unit}"
            )
        else:
            parts.append(f"{self.done}{unit}")
        text = " ".join(parts) + f"  {rate:.2f}/s"
        if self.total and self.done >= self.total:
            text += f"  took {_clock_text(elapsed)}"
        elif self.total and rate > 0:
            text += f"  eta {_clock_text((self.total - self.done) / rate)}"
        return text + (f"  {self.note}" if self.note else "")

    def _draw(self):
        text = self.line()
        self.stream.write("\r" + text.ljust(self._drawn))  # blank what a longer line left
        self.stream.flush()
        self._drawn = max(len(text), 1)

    def _print(self, now):
        self.stream.write(self.line() + "\n")
        self.stream.flush()
        self._printed, self._last_line = self.done, now
