"""How far a long run got: on screen (``Progress``) and on disk for resuming (``Journal``).

``Progress`` draws a tqdm bar when stderr is a terminal, else logs a line now and then.
``Journal`` is the append-only record of finished steps that lets a killed run resume.
"""
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

logger = logging.getLogger(__name__)


class Progress:
    """Count finished items. Use as a context manager; ``summary()`` gives the closing line.

    The bar is drawn only when ``stream`` (default stderr) is a terminal, so logs and pipes
    stay clean; otherwise an INFO line is logged every ``interval`` seconds.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "user", stream=None, interval: float = 10.0):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream
        self.interval = interval
        self.count = 0
        self._bar = None
        self._started = None
        self._stopped = None
        self._next_log = None

    def __enter__(self):
        stream = self.stream if self.stream is not None else sys.stderr
        self._started = time.monotonic()
        self._next_log = self._started + self.interval
        if stream.isatty():
            self._bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, file=stream,
                             mininterval=0.2, dynamic_ncols=True)
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n: int = 1):
        """Record ``n`` more finished items."""
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.interval and time.monotonic() >= self._next_log:
            self._next_log = time.monotonic() + self.interval
            logger.info("%s: %d/%s %ss (%.0f/s)", self.desc, self.count,
                        self.total if self.total is not None else "?", self.unit, self.rate)

    def close(self):
        """Stop the clock and remove the bar."""
        if self._stopped is None:
            self._stopped = time.monotonic()
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @property
    def elapsed(self) -> float:
        """Seconds since the start (until close)."""
        if self._started is None:
            return 0.0
        return (self._stopped or time.monotonic()) - self._started

    @property
    def rate(self) -> float:
        """Items per second so far."""
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        """``1000 users in 0.4 s (2500 users/s)``."""
        return f"{self.count} {self.unit}s in {self.elapsed:.1f} s ({self.rate:.0f} {self.unit}s/s)"


class Journal:
    """An append-only log of finished steps, one record (a line of fields) each, for resuming.

    ``append`` writes a batch of records and fsyncs once, so a batch is durable when it returns.
    A crash can leave the last line torn (no newline): ``records`` ignores it and the next
    ``append`` cuts it off first, so that step is simply done again.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._fd = None

    def records(self) -> Iterator[list]:
        """The complete records written so far, as lists of fields (none if there is no journal)."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            for raw in f:
                if raw.endswith(b"\n"):
                    yield raw.decode().split()

    def append(self, records):
        """Write records (sequences of non-empty fields without whitespace) and fsync them."""
        lines = []
        for record in records:
            fields = [str(v) for v in record]
            if not fields or any(not v or len(v.split()) != 1 for v in fields):
                raise ValueError(f"journal fields must be non-empty and free of whitespace: {fields!r}")
            lines.append(" ".join(fields) + "\n")
        if not lines:
            return
        if self._fd is None:
            self._open()
        os.write(self._fd, "".join(lines).encode())
        os.fsync(self._fd)

    def close(self):
        """Close the file (records are already on disk)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _open(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)  # may hold keyfiles
        size = os.lseek(fd, 0, os.SEEK_END)
        if size and os.pread(fd, 1, size - 1) != b"\n":
            keep = size
            while keep > 0:  # back to the last newline, 64 kB at a time
                start = max(0, keep - 65536)
                cut = os.pread(fd, keep - start, start).rfind(b"\n")
                keep = start + cut + 1 if cut >= 0 else start
                if cut >= 0:
                    break
            logger.warning("%s: dropping a torn last line left by an interrupted run", self.path)
            os.ftruncate(fd, keep)
        self._fd = fd
