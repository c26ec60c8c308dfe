"""`kerasport workflow verify` on a real SLURM cluster, through README's profile.

`make test-slurm` starts a one-node cluster on this machine (scripts/slurm_cluster.sh:
munged, MariaDB, slurmdbd, slurmctld, slurmd) and runs this file with KERASPORT_SLURM=1 and
the cluster's SLURM_CONF; anywhere else it is skipped, so `make test` never needs a cluster.
The profile is README's own `slurm/config.yaml`, read from README, so the documented
profile is the tested one. The embedded examples in shard files (test_workflow's fixture,
which also runs them through the local executor) go through the SLURM executor plugin:
the cohort report must equal the local run's, and `sacct` must list one job per shard and
the merge. Then a run in which one verify job is cancelled mid-run with `scancel`: the
plugin never sees that job end (sacct reports `CANCELLED by UID`, a state it does not know),
so the run waits until stopped with Ctrl-C, as README says; the same command, rerun, redoes
that shard and the merge only, to the same cohort report.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# The local run and the comparison are test_workflow's own (tests/ is on sys.path through
# its conftest); its fixtures `bundle` and `embedded` are used here as they are.
from test_workflow import bundle, comparable, embedded  # noqa: F401

from kerasport.assets import DEFAULT_MODEL
from kerasport.workflow import layout

UNAVAILABLE = os.environ.get("KERASPORT_SLURM_UNAVAILABLE")  # scripts/slurm_cluster.sh's why
# Skipped tests rather than a skipped module: a run of this file alone must still count its
# tests (pytest exits 5 on a module skipped whole), and skip them naming why.
pytestmark = [
    pytest.mark.skipif(os.environ.get("KERASPORT_SLURM") != "1",
                       reason="needs a SLURM cluster: run `make test-slurm`, which starts one"),
    pytest.mark.skipif(bool(UNAVAILABLE), reason=f"no SLURM cluster here: {UNAVAILABLE}"),
]

README = Path(__file__).resolve().parents[2] / "README.md"
# Test-only speed: the plugin waits 40 s before its first `sacct` and after each job that
# ends (its default, sized for big clusters); jobs here take 10-20 s.
FAST = ["--slurm-init-seconds-before-status-checks", "2"]
RUN_ID = re.compile(r"SLURM run ID: (\S+)")
WAIT_FOR = 300  # seconds, at most, for a run to get to where the test acts on it
# Seconds the run is watched once sacct has the cancelled job: the plugin asks sacct 2 s after
# submitting, then 10 s later each time than the last (FAST), so 14, 36 and 68 s after: it
# asks at least once meanwhile.
STATUS_CHECKS = 35


def readme_profile() -> str:
    """README's SLURM profile: the YAML block after "a profile `slurm/config.yaml`"."""
    text = README.read_text()
    start = text.index("a profile `slurm/config.yaml`")
    match = re.compile(r"```yaml\n(.*?)```", re.S).search(text, start)
    assert match, "README shows no SLURM profile"
    assert "--profile slurm/" in text[match.end():], "README shows no run with the profile"
    return match.group(1)


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("profile") / "slurm"
    directory.mkdir()
    (directory / "config.yaml").write_text(readme_profile())
    return directory


def workflow_command(local: dict[str, Any], bundle_dir: Path, run: Path, profile: Path,
                     *snakemake: str) -> list[str]:
    """README's command with the profile, on the local run's shard files."""
    return [sys.executable, "-m", "kerasport", "workflow", "verify", str(DEFAULT_MODEL),
            str(bundle_dir), "--examples", *map(str, local["files"]), "--out", str(run),
            "--profile", str(profile), "--snakemake", *FAST, *snakemake]


def run_id(output: str) -> str:
    """The plugin's id of a run: every job it submits is named by it."""
    ids = RUN_ID.findall(output)
    assert len(ids) == 1, f"expected one SLURM run ID in the output:\n{output[-3000:]}"
    return ids[0]


def sacct_jobs(name: str) -> list[tuple[str, str, str]]:
    """(job id, state, comment) of each job named `name`, from the accounting database; the
    plugin's comment names the rule and wildcards (rule_verify_wildcards_SHARD)."""
    out = subprocess.run(
        ["sacct", "-X", "--parsable2", "--noheader", "--starttime", "now-2hours", "--name",
         name, "--format", "JobID,State,Comment"],
        check=True, capture_output=True, text=True,
    ).stdout
    print(out, end="")  # shown with the test's output when it fails
    return [tuple(line.split("|", 2)) for line in out.splitlines()]  # type: ignore[misc]


def job_comments(files: list[Path]) -> list[str]:
    """The comments of a run's jobs: one verify job per shard file, then the merge."""
    return sorted([f"rule_verify_wildcards_{file.name}" for file in files] + ["rule_merge"])


def cohort(run: Path) -> dict[str, Any]:
    return json.loads((run / layout.COHORT_JSON).read_text())


@pytest.fixture(scope="module")
def slurm_run(
    embedded: dict[str, Any], bundle: Path, profile: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """The local run's shard files run through SLURM with README's profile, once: the run
    directory, the command and its output. The last test reruns it after a cancellation."""
    assert importlib.util.find_spec("snakemake_executor_plugin_slurm"), (
        "the `slurm` extra is not installed (make test-slurm installs it)"
    )
    run = tmp_path_factory.mktemp("slurm") / "run"
    command = workflow_command(embedded, bundle, run, profile)
    done = subprocess.run(command, capture_output=True, text=True, timeout=WAIT_FOR)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "verdict: PASS" in done.stdout
    return {"run": run, "command": command, "output": output}


def test_the_slurm_run_equals_the_local_run_and_sacct_lists_its_jobs(
    embedded: dict[str, Any], slurm_run: dict[str, Any]  # noqa: F811
) -> None:
    run = slurm_run["run"]
    assert comparable(cohort(run)) == comparable(embedded["cohort"])
    assert (run / layout.COHORT_HTML).read_text().startswith("<!DOCTYPE html>")
    jobs = sacct_jobs(run_id(slurm_run["output"]))
    assert sorted(comment for _, _, comment in jobs) == job_comments(embedded["files"])
    assert {state for _, state, _ in jobs} == {"COMPLETED"}


def test_a_job_cancelled_mid_run_is_redone_by_the_rerun(
    embedded: dict[str, Any], slurm_run: dict[str, Any]  # noqa: F811
) -> None:
    # One shard's report gone: a run redoes that shard, then the merge. (The largest shard,
    # so that its job is still running when it is cancelled.)
    run, command = slurm_run["run"], slurm_run["command"]
    shard = embedded["files"][0].name
    (run / layout.SHARD_REPORT.format(shard=shard)).unlink()
    (run / layout.VERIFY_LOG.format(shard=shard)).unlink()  # its new one: the job started
    # A session of its own, so that the Ctrl-C below reaches the run and not pytest.
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=collect, args=(first, lines), daemon=True)
    reader.start()
    try:
        cancelled = cancel_the_running_verify_job(first, run, shard, lines)
        # The plugin never takes the cancelled job for ended: sacct says `CANCELLED by 0`, a
        # state it does not know, so the run waits (README says so).
        wait_until(lambda: sacct_state(cancelled).startswith("CANCELLED"), first, lines)
        time.sleep(STATUS_CHECKS)
        assert first.poll() is None, (
            "the SLURM plugin now ends a run whose job was cancelled: README's 'On a cluster' "
            f"says it waits; update it\n{''.join(lines)[-3000:]}"
        )
        # README's remedy: Ctrl-C (to the run's process group, as a terminal sends it).
        os.killpg(first.pid, signal.SIGINT)
        first.wait(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        reader.join(timeout=10)
    output = "".join(lines)
    assert first.returncode == 2, output[-5000:]
    assert not (run / layout.SHARD_REPORT.format(shard=shard)).exists()
    assert sacct_jobs(run_id(output)) == [
        (cancelled, "CANCELLED by 0", f"rule_verify_wildcards_{shard}")
    ]

    # The same command again: that shard and the merge, to the same cohort report.
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=WAIT_FOR)
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-5000:]
    assert comparable(cohort(run)) == comparable(embedded["cohort"])
    jobs = sacct_jobs(run_id(output))
    assert sorted(comment for _, _, comment in jobs) == [
        "rule_merge", f"rule_verify_wildcards_{shard}"
    ]
    assert {state for _, state, _ in jobs} == {"COMPLETED"}


def collect(process: subprocess.Popen[str], lines: list[str]) -> None:
    """Append the process's output to `lines` as it comes, for the test to watch."""
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[str],
               lines: list[str]) -> None:
    """Poll `condition` while the run goes on; fail with its output when it ended first or
    WAIT_FOR seconds passed."""
    deadline = time.monotonic() + WAIT_FOR
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(
                f"the run {'ended' if process.poll() is not None else 'went on'} before "
                f"it got there:\n{''.join(lines)[-3000:]}"
            )
        time.sleep(0.5)


def sacct_state(job: str) -> str:
    """A job's state as the accounting database has it ("" before it is recorded)."""
    return subprocess.run(
        ["sacct", "-X", "--parsable2", "--noheader", "--jobs", job, "--format", "State"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def cancel_the_running_verify_job(process: subprocess.Popen[str], run: Path, shard: str,
                                  lines: list[str]) -> str:
    """`scancel` the run's verify job of `shard` once it runs and its command has started
    (its log exists); its SLURM job id."""
    found: list[str] = []

    def running() -> bool:
        ids = RUN_ID.findall("".join(lines))
        if ids and (run / layout.VERIFY_LOG.format(shard=shard)).exists():
            found.extend(subprocess.run(
                ["squeue", "--noheader", "--name", ids[0], "--states", "RUNNING",
                 "--format", "%i"],
                check=True, capture_output=True, text=True,
            ).stdout.split())
        return bool(found)

    wait_until(running, process, lines)
    assert len(found) == 1, f"one job expected, running: {found}"
    subprocess.run(["scancel", found[0]], check=True)
    return found[0]
