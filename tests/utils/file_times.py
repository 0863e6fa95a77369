"""A pytest plugin: at the end of the session, the wall time spent in each test file, slowest first.

Each test's setup, call and teardown count for its file, so the session fixtures a file is the first
to need (the embedded stack, Keycloak, ``langgraph dev``) show up against that file: the slowest
setups are visible. It only reports; outcomes are untouched.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

TOP = 15
"""Files listed."""


class FileTimes:
    """Adds up the duration of every test phase by file and prints the slowest files at the end."""

    def __init__(self, *, top: int = TOP) -> None:
        self._top = top
        self._seconds: defaultdict[str, float] = defaultdict(float)
        self._tests: defaultdict[str, set[str]] = defaultdict(set)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        path = report.nodeid.split("::", 1)[0]
        self._seconds[path] += report.duration
        self._tests[path].add(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self._seconds:
            return
        slowest = sorted(self._seconds.items(), key=lambda item: item[1], reverse=True)[: self._top]
        terminalreporter.section(f"wall time per test file (setup + call + teardown), slowest {len(slowest)}")
        for path, seconds in slowest:
            terminalreporter.write_line(f"{seconds:8.1f} s  {len(self._tests[path]):4d} tests  {path}")
        total = sum(self._seconds.values())
        terminalreporter.write_line(f"{total:8.1f} s  in {len(self._seconds)} files")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(FileTimes(), "mandate-file-times")
