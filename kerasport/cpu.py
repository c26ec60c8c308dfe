"""The host CPU's feature flags, so a TVM library is loaded only where it can run.

Stdlib only: the runtime checks this before it touches any compiled code (a library built
for AVX-512 dies with an illegal instruction on an AVX2-only CPU).
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterable

_CPUINFO = "/proc/cpuinfo"


def _cpuinfo_value(field: str) -> str | None:
    """The first value of `field` in /proc/cpuinfo, None where there is none."""
    try:
        with open(_CPUINFO, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, sep, value = line.partition(":")
                if sep and key.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return None


@functools.cache
def host_cpu_features() -> frozenset[str]:
    """Flag names of /proc/cpuinfo (Linux x86-64); empty elsewhere, so nothing qualifies."""
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return frozenset()
    return frozenset((_cpuinfo_value("flags") or "").split())


def missing_features(required: Iterable[str], host: Iterable[str]) -> list[str]:
    """The required flags the host lacks, in the order required (empty: it can run)."""
    have = set(host)
    return [flag for flag in required if flag not in have]


@functools.cache
def host_cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (what export's speed figures were taken on)."""
    return _cpuinfo_value("model name") or platform.processor() or "unknown CPU"
