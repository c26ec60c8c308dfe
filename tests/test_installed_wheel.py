"""kerasport as a user installs it: a wheel with the `export` extra only, in a clean venv.

`make test` builds the wheel, installs it with `[export]` into `.venv-wheel` and points
KERASPORT_WHEEL_VENV at it; these tests run the installed commands from a directory with no
checkout and no `../shared` beside it, as a user who pip-installed the package has.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

WHEEL_VENV = os.environ.get("KERASPORT_WHEEL_VENV", "")
# What TensorFlow and absl print to stderr on import or first use.
TF_LOG_LINE = re.compile(r"oneDNN|absl::|^[IWEF]\d{4} |tensorflow/|cuda|TF-TRT", re.M | re.I)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not WHEEL_VENV, reason="KERASPORT_WHEEL_VENV unset: no wheel venv (make test builds one)"
    ),
]


def kerasport(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")}
    return subprocess.run(
        [str(Path(WHEEL_VENV) / "bin" / "kerasport"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=900,
    )


def test_the_installed_package_is_the_wheel_not_the_checkout(tmp_path: Path) -> None:
    python = Path(WHEEL_VENV) / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", "import kerasport; print(kerasport.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )
    assert "site-packages" in done.stdout


def test_install_printed_no_packaging_deprecation() -> None:
    for log in ("wheel-build.log", "wheel-install.log"):
        text = (Path(WHEEL_VENV) / f".{log}").read_text()
        assert not re.search(r"deprecat|BuildBackendWarning", text, re.I), text


@pytest.mark.parametrize(
    "command",
    ["", "export", "verify", "bench", "demo", "featurize", "workflow", "workflow verify"],
)
def test_every_command_explains_itself_with_only_the_export_extra(
    command: str, tmp_path: Path
) -> None:
    done = kerasport(*command.split(), "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "usage: kerasport" in done.stdout


@pytest.mark.parametrize(
    ("extra", "args"),
    [
        ("featurize", ["featurize", "reads.bam", "--ref", "ref.fa", "--region", "chr20:1-100",
                       "-o", "x.npz"]),
        ("workflow", ["workflow", "verify", "m.keras", "b", "--examples", "x.npy", "--out", "r"]),
    ],
)
def test_a_command_whose_extra_is_missing_says_what_to_install(
    extra: str, args: list[str], tmp_path: Path
) -> None:
    done = kerasport(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert f"pip install 'kerasport[{extra}]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_and_bench_run_from_the_wheel_without_shared_and_without_tf_logs(
    tmp_path: Path,
) -> None:
    demo = kerasport("demo", "--out", "demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "verdict: PASS" in demo.stdout
    assert not TF_LOG_LINE.search(demo.stdout + demo.stderr), demo.stderr

    site = subprocess.run(
        [str(Path(WHEEL_VENV) / "bin" / "python"), "-c",
         "import kerasport.assets as a; print(a.DEFAULT_MODEL)"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )
    model = site.stdout.strip()
    bench = kerasport("bench", "demo/bundle", "--model", model, "--quick", "--out", "bench",
                      cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr
    assert not TF_LOG_LINE.search(bench.stdout + bench.stderr), bench.stderr
    results = (tmp_path / "bench" / "RESULTS.md").read_text()
    assert "trace" in results.lower() and "|" in results  # its tables, from the summary
