"""How the workflow shows the cohort's files to Snakemake, and gives their paths to jobs.

Snakemake reads `{name}` anywhere in a rule's input path as a wildcard and `<name>` as a
path variable, and has no escape for either: a doubled brace, or a path returned by an
input function, is read the same (Snakemake 9). So a model under `models{v2}/` cannot be
named to it at all, and a file named `{shard}.npz` would silently become another. Snakemake
is therefore never shown a path the config names: each such file is linked into the run
directory under a name the workflow chose (layout.INPUT, layout.SHARD_INPUT, after the
shard ids), and rules declare the links, which Snakemake follows to the file's own time,
so a changed file still reruns its jobs. The jobs themselves are given the real paths as
params made by functions, which Snakemake passes on unformatted, shell-quoted.
"""

from __future__ import annotations

import os
from pathlib import Path

from kerasport.workflow.config import WorkflowConfig, WorkflowConfigError


def link_inputs(config: WorkflowConfig, run_dir: Path) -> None:
    """Link every file the config names into `run_dir`, as config.files() names the links.

    Run by the Snakefile when it loads, so a config written by hand gets its links too. A
    relative path in the config is from the run directory, where the jobs run.
    """
    for name, path in config.files().items():
        target = os.path.join(run_dir, path)  # `path` itself when absolute
        if not os.path.exists(target):
            raise WorkflowConfigError(f"{path}: no such file or directory")
        _link(run_dir / name, target)


def _link(link: Path, target: str) -> None:
    """Point `link` at `target`, leaving a link that already does untouched (its time is
    what Snakemake compares); otherwise replaced atomically, since on a cluster every job
    loads the Snakefile too, some at once."""
    try:
        if os.readlink(link) == target:
            return
    except OSError:  # not there yet, or not a link
        pass
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        temporary.unlink(missing_ok=True)
        os.symlink(target, temporary)
        os.replace(temporary, link)
    except OSError as exc:
        raise WorkflowConfigError(f"cannot link {target} as {link}: {exc.strerror or exc}") from exc


def argument(path: str) -> str:
    """`path` as a word of a job's command line: a relative one starting with '-' (from a
    config written by hand; the workflow's own are absolute) gets './', or a parser would
    take it for an option."""
    return f"./{path}" if path.startswith("-") else path
