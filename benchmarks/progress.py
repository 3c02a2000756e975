"""A progress bar on stderr: redrawn in place on a terminal, a line per step otherwise."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Counts ``total`` steps; ``note`` prints a line without breaking the bar."""

    def __init__(self, total: int = 0, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._start = time.monotonic()
        self._drawn = False

    def step(self, text: str) -> None:
        """Start step ``done + 1`` of ``total``, described by ``text``."""
        self.done += 1
        elapsed = time.monotonic() - self._start
        count = f"{self.done:>{len(str(self.total))}}/{self.total}"
        if not self.tty:
            print(f"[{count} {elapsed:5.1f}s] {text}", file=self.stream, flush=True)
            return
        width = shutil.get_terminal_size((80, 20)).columns
        filled = round(20 * (self.done - 1) / max(self.total, 1))
        line = f"[{'#' * filled}{'.' * (20 - filled)}] {count} {elapsed:5.1f}s {text}"
        self.stream.write("\r" + line[: width - 1].ljust(width - 1))
        self.stream.flush()
        self._drawn = True

    def note(self, text: str) -> None:
        """A message line, above the bar on a terminal."""
        self._clear()
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self._drawn:
            width = shutil.get_terminal_size((80, 20)).columns
            self.stream.write("\r" + " " * (width - 1) + "\r")
            self.stream.flush()
            self._drawn = False
