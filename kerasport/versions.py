"""Installed library versions, recorded wherever a result must say what produced it."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata


def installed_versions(distributions: Iterable[str]) -> dict[str, str]:
    """Version of each named distribution that is installed; absent ones are left out."""
    versions = {}
    for name in distributions:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
