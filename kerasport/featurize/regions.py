"""Regions and contig names.

Files from the same sample disagree on naming (`chr20` in UCSC/hg19 files, `20` in b37
ones), and a featurizer that silently finds no reads because of a `chr` prefix is worse
than one that fails. So each file's own name for the contig is looked up, trying the name
as given, then with `chr` stripped or added, and a miss names what the file does have.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kerasport.featurize.errors import FeaturizeError

_REGION = re.compile(r"^(?P<contig>[^:\s]+):(?P<start>[\d,]+)-(?P<end>[\d,]+)$")


@dataclass(frozen=True)
class Region:
    """A half-open 0-based interval [start, end) on one contig, as pysam takes them."""

    contig: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.contig}:{self.start + 1:,}-{self.end:,}"

    def __len__(self) -> int:
        return self.end - self.start


def parse_region(text: str) -> Region:
    """Parse samtools-style `CONTIG:START-END` (1-based, inclusive, commas allowed)."""
    match = _REGION.match(text.strip())
    if not match:
        raise FeaturizeError(f"region {text!r} is not CONTIG:START-END (e.g. chr20:1-1000)")
    start = int(match.group("start").replace(",", ""))
    end = int(match.group("end").replace(",", ""))
    if start < 1 or end < start:
        raise FeaturizeError(f"region {text!r}: need 1 <= START <= END")
    return Region(match.group("contig"), start - 1, end)


def contig_aliases(name: str) -> list[str]:
    """The names a contig may go by: as given, then without or with a `chr` prefix."""
    if name.lower().startswith("chr"):
        return [name, name[3:]]
    return [name, "chr" + name]


def resolve_contig(name: str, available: Iterable[str], what: str) -> str:
    """Return the name `available` (one file's contigs) uses for `name`, or fail clearly."""
    names = list(available)
    known = set(names)
    for alias in contig_aliases(name):
        if alias in known:
            return alias
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    raise FeaturizeError(f"{what} has no contig {name!r} (nor {contig_aliases(name)[1]!r}); "
                         f"it has: {shown or 'none'}")
