"""The per-file wall-time report at the end of a test session: listed, sorted, and outcomes untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.utils.file_times import FileTimes

ROOT = Path(__file__).resolve().parents[1]


class Lines:
    """Just enough of pytest's terminal reporter to read what the plugin writes."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str) -> None:
        self.lines.append(f"== {title}")

    def write_line(self, line: str) -> None:
        self.lines.append(line)


def _report(nodeid: str, when: str, duration: float) -> pytest.TestReport:
    return pytest.TestReport(nodeid, ("x.py", 0, "t"), {}, "passed", None, when, duration=duration)


def test_file_times_adds_every_phase_by_file_and_lists_the_slowest_first() -> None:
    times = FileTimes(top=2)
    for nodeid, when, seconds in [
        ("tests/a.py::one", "setup", 4.0), ("tests/a.py::one", "call", 0.5), ("tests/a.py::one", "teardown", 0.5),
        ("tests/b.py::one", "call", 1.0), ("tests/b.py::two", "call", 1.0),
        ("tests/c.py::one", "call", 9.0),
        ("tests/d.py::one", "call", 0.1),
    ]:
        times.pytest_runtest_logreport(_report(nodeid, when, seconds))
    out = Lines()
    times.pytest_terminal_summary(out)  # type: ignore[arg-type]
    assert out.lines == [
        "== wall time per test file (setup + call + teardown), slowest 2",
        "     9.0 s     1 tests  tests/c.py",
        "     5.0 s     1 tests  tests/a.py",
        "    16.1 s  in 4 files",
    ]


def test_file_times_prints_nothing_when_no_test_ran() -> None:
    out = Lines()
    FileTimes().pytest_terminal_summary(out)  # type: ignore[arg-type]
    assert out.lines == []


def _pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # a bare pytest: the installed plugins take seconds to import
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(directory)],
        cwd=directory, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_file_times_plugin_reports_each_file_and_changes_no_outcome(tmp_path: Path) -> None:
    (tmp_path / "test_passing.py").write_text("def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    (tmp_path / "test_failing.py").write_text("def test_broken():\n    assert 1 == 2\n")
    plain = _pytest(tmp_path)
    timed = _pytest(tmp_path, "-p", "tests.utils.file_times")
    assert timed.returncode == plain.returncode == 1
    outcomes = [run.stdout.splitlines()[-1].split(" in ")[0] for run in (plain, timed)]
    assert outcomes == ["1 failed, 2 passed"] * 2
    assert "wall time per test file" in timed.stdout and "wall time per test file" not in plain.stdout
    assert any(line.endswith("2 tests  test_passing.py") for line in timed.stdout.splitlines())
    assert any(line.endswith("1 tests  test_failing.py") for line in timed.stdout.splitlines())
