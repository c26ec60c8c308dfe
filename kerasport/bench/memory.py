"""Resident memory of the current process, read from /proc (Linux) without extra packages.

Peak memory is measured with the kernel's own high-water mark (VmHWM), reset through
/proc/self/clear_refs where the kernel allows it; a 1 ms sampling thread backs it up where it
does not, so the peak of one call can be told apart from what happened before it.
"""

from __future__ import annotations

import resource
import threading
from pathlib import Path
from types import TracebackType

MB = 1024 * 1024
_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    """Current resident set size (VmRSS); falls back to the lifetime peak off Linux."""
    kb = _status_kb("VmRSS")
    if kb is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return kb * 1024


def hwm_bytes() -> int:
    """Peak resident set size since start or since the last `reset_hwm()`."""
    kb = _status_kb("VmHWM")
    if kb is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return kb * 1024


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return hwm_bytes() <= rss_bytes() + MB


class PeakRss:
    """Context manager: the peak RSS reached inside the block.

    Uses the reset high-water mark when it can, and always also samples RSS every
    `interval` seconds, taking the larger of the two.
    """

    def __init__(self, interval: float = 0.001) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._sampled = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.hwm_reset = False
        self.peak = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled = max(self._sampled, rss_bytes())
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self.hwm_reset = reset_hwm()
        self._sampled = rss_bytes()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sampled = max(self._sampled, rss_bytes())
        self.peak = max(self._sampled, hwm_bytes()) if self.hwm_reset else self._sampled
