"""Evaluation progress for people and for log files.

On a terminal: a tqdm bar with integer example counts whose final frame stays on screen. In a
file or a batch job's log (not a terminal): one plain line each time another tenth of the
examples is done, or after ``interval_s`` seconds without a line, with the examples done, the
rate and the estimated time left; no carriage returns.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO


def _clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Examples done out of ``total`` (None: unknown), reported on ``stream``."""

    def __init__(self, total: Optional[int], stream: Optional[TextIO] = None,
                 interval_s: float = 60.0, steps: int = 10,
                 clock: Callable[[], float] = time.monotonic):
        self.total = total or None
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.steps = steps
        self.clock = clock
        self.done = 0
        self.start = clock()
        self._last_line = self.start
        self._last_step = 0
        self.bar = None
        if _is_terminal(self.stream):
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, unit="ex", file=self.stream, dynamic_ncols=True,
                            leave=True)

    def update(self, done: int, postfix: Optional[dict] = None) -> None:
        """Set the number of examples done so far."""
        done = int(done) if self.total is None else min(int(done), self.total)
        if self.bar is not None:
            self.bar.update(done - self.done)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            self.done = done
            return
        self.done = done
        now = self.clock()
        step = done * self.steps // self.total if self.total else 0
        if step > self._last_step or now - self._last_line >= self.interval_s:
            if done < (self.total or done + 1):
                self._line(now)
            self._last_step, self._last_line = step, now

    def close(self) -> None:
        """Report the final count (the bar's last frame, or a last line)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        else:
            self._line(self.clock(), final=True)
        self.stream.flush()

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.done}/{self.total} examples ({100 * self.done // self.total}%)"
                 if self.total else f"{self.done} examples",
                 f"{rate:.1f} examples/s"]
        if final:
            parts.append(f"in {_clock_text(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"ETA {_clock_text((self.total - self.done) / rate)}")
        self.stream.write("distsnn: " + ", ".join(parts) + "\n")
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
