"""Progress of a long job over frames (srexp-upscale's videos): a rich bar on a terminal, else periodic log lines."""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("srexp.data.video")


class Progress:
    """Frames done / total, net frames per second and ETA: a rich bar on stderr when it is a terminal, else a log
    line every ``every`` seconds and one at the end."""

    def __init__(self, total: int | None, done: int, every: float, label: str):
        self.total, self.done, self.every, self.start = total, done, every, done
        self.t0 = self.last = time.perf_counter()
        self.bar = None
        if sys.stderr.isatty():
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[fps]} fps"), TimeElapsedColumn(), TextColumn("ETA"),
                           TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total, completed=done, fps="–")

    @property
    def fps(self) -> float:
        dt = time.perf_counter() - self.t0
        return (self.done - self.start) / dt if dt > 0 else 0.0

    def line(self, eta: bool = True) -> str:
        of = f"/{self.total}" if self.total else ""
        eta = "" if eta else None
        if eta is not None and self.total and self.fps > 0:
            eta = f", ETA {_hms(max(self.total - self.done, 0) / self.fps)}"
        return (f"frames {self.done}{of}, {self.fps:.2f} fps, elapsed "
                f"{_hms(time.perf_counter() - self.t0)}{eta or ''}")

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, fps=f"{self.fps:.2f}")
        elif time.perf_counter() - self.last >= self.every:
            self.last = time.perf_counter()
            log.info(self.line())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        log.info(self.line(eta=False))


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
