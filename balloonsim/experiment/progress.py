"""Batch progress: a bar on a terminal; off a terminal (a log, CI, nohup) a line every few seconds with runs
done of total, failures, rate and ETA; nothing with --quiet."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

LINE_EVERY_S = 5.0


def duration_text(seconds: float) -> str:
    """`42s`, `3m05s`, `2h04m`."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    def __init__(
        self,
        total: int,
        done: int,
        label: str,
        quiet: bool,
        stream: TextIO | None = None,
        every_s: float = LINE_EVERY_S,
    ):
        self.stream = stream or sys.stderr
        self.total = total
        self.done = done
        self.failed = 0
        self.label = label
        self.ran = 0
        self.every_s = every_s
        self._lines = not quiet and not self.stream.isatty()
        self._started = self._last = time.monotonic()
        self._bar = tqdm(
            total=total,
            initial=done,
            desc=label,
            unit="run",
            disable=quiet or not self.stream.isatty(),
            file=self.stream,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        self._bar.set_postfix(failed=0, refresh=False)

    def advance(self, ok: bool) -> None:
        self.done += 1
        self.ran += 1
        if not ok:
            self.failed += 1
            self._bar.set_postfix(failed=self.failed, refresh=False)
        self._bar.update(1)
        now = time.monotonic()
        if self._lines and now - self._last >= self.every_s:
            self._last = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        """`pressure: 120/540 runs (22%), 3 failed, 4.1 runs/s, ETA 1m42s`."""
        elapsed = (now if now is not None else time.monotonic()) - self._started
        rate = self.ran / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done
        eta = duration_text(left / rate) if rate > 0 else "?"
        percent = 100 * self.done // self.total if self.total else 100
        return (
            f"{self.label}: {self.done}/{self.total} runs ({percent}%), {self.failed} failed, "
            f"{rate:.3g} runs/s, ETA {eta}"
        )

    def close(self) -> None:
        self._bar.close()
        if self._lines and self.ran:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
