"""Where the cohort workflow puts its files, and what each job may ask of a machine.

Shared by the Snakefile (its rules' outputs and logs) and by `kerasport workflow verify`
(which reads the cohort report and, after a failure, the failed jobs' logs), so the two
can never disagree. Every path is relative to the run directory (`--out`).
"""

from __future__ import annotations

CONFIG = "config.json"
EXAMPLES = "examples/{shard}.npz"  # featurize's output, one per (reads, region)
SHARD_REPORT = "shards/{shard}.json"  # verify's report of one shard
COHORT_JSON = "cohort.json"  # the merge
COHORT_HTML = "cohort.html"
VERDICT = "cohort.passed"  # touched only when the cohort passes: `snakemake`'s exit follows it

# Links to the files the config names, which Snakemake is shown instead of their paths
# (links.py says why): the model, bundle and reference, and each shard's own files (its
# examples, or its reads, truth and confident regions), by role.
INPUT = "inputs/{role}"
SHARD_INPUT = "inputs/{role}/{shard}"

FEATURIZE_LOG = "logs/featurize/{shard}.log"
VERIFY_LOG = "logs/verify/{shard}.log"
MERGE_LOG = "logs/merge.log"
# Each job's log beside the output it makes: a job failed when its log was written and its
# output is missing (Snakemake removes the outputs of a failed job).
LOG_OUTPUTS = ((FEATURIZE_LOG, EXAMPLES), (VERIFY_LOG, SHARD_REPORT), (MERGE_LOG, COHORT_JSON))

# Snakemake's `benchmark:` record of each job: wall seconds, peak memory (max_rss, MB), CPU
# time; what to size a cluster profile's resources by.
FEATURIZE_USAGE = "usage/featurize/{shard}.tsv"
VERIFY_USAGE = "usage/verify/{shard}.tsv"
MERGE_USAGE = "usage/merge.tsv"

# Shard ids name files and Snakemake wildcards: no separators, spaces or shell characters.
SHARD_ID = r"[A-Za-z0-9][A-Za-z0-9._-]*"

# Per rule: one thread each (the TensorFlow reference and ONNX Runtime are held to it) and
# memory with room to spare over the peaks measured (README, "Cohorts": verify 709 MB on a
# small shard, 1,510 MiB for a million rows). A profile or `--set-resources RULE:mem_mb=N`
# overrides them; `runtime` is in minutes.
RESOURCES = {
    "featurize": {"mem_mb": 2000, "runtime": 60},
    "verify": {"mem_mb": 3000, "runtime": 60},
    "merge": {"mem_mb": 1000, "runtime": 30},
}
