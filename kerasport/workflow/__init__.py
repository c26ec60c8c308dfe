"""Cohort scale: `verify` (and `featurize`) per shard as a Snakemake workflow, merged exactly.

The workflow is a Snakefile shipped in this package (`SNAKEFILE`); `kerasport workflow
verify` writes its config for a cohort and runs it with Snakemake (the `workflow` extra),
locally or through any Snakemake profile. Importing this package loads nothing.
"""

from __future__ import annotations

from pathlib import Path

SNAKEFILE = Path(__file__).resolve().parent / "Snakefile"

__all__ = ["SNAKEFILE"]
