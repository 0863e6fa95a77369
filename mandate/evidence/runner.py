"""Gathering the evidence: check the table's references, run its tests, then each mutation's.

Every run happens in a copy of the tree (the tracked and untracked files git does not ignore),
started through one forking launcher, against shared Postgres and OpenFGA servers on which each
run gets a database and a store of its own: the unmutated copy runs all named tests once (the
baseline), and each mutated copy runs its control's tests, stopping at the first failure. A run
differs from the baseline by its mutation only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from mandate.evidence._launcher import Job, JobResult, Launcher
from mandate.evidence._workspace import copy_tree, tree_files
from mandate.evidence.errors import MutationError
from mandate.evidence.mutations import apply_mutation, mutation_named
from mandate.evidence.references import Problem, check_references, check_tests, matching_tests, named_test_files
from mandate.evidence.table import Control

__all__ = ["ControlResult", "EvidenceRun", "MutationResult", "TestServers", "gather_evidence"]

RUN_TIMEOUT_S = 900.0
"""Default bound of one pytest run (the baseline runs every named test)."""
PYTEST_ARGS = ("-q", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")
"""Quiet; no cache written into the copies; and no error because the launcher imported some pytest
plugins' packages (anyio, langsmith, hypothesis, …) before pytest could mark them for rewriting."""
_SCRUBBED_PREFIXES = ("MANDATE_", "OTEL_", "PYTEST_")
"""Variables of the caller's environment a run never sees: it gets its own."""
_FAILED = frozenset({"failed", "error", "xpassed"})

TestStatus = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed", "not run"]
MutationStatus = Literal["killed", "survived", "invalid", "not run"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TestServers:
    """Postgres (with pgvector) and OpenFGA that the runs share; never a production database."""

    __test__ = False  # not a pytest test class

    database_url: str
    """A database URI on the server; each run creates a database of its own beside it."""
    fga_api_url: str
    """OpenFGA's HTTP API; each run uses a store of its own."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MutationResult:
    """What a mutation did to its control's tests."""

    name: str
    removes: str
    path: str
    status: MutationStatus
    """``killed``: a test failed (the control is proven); ``survived``: all passed (a finding);
    ``invalid``: the mutated tree did not run its tests (no evidence either way); ``not run``."""
    failing: tuple[str, ...] = ()
    """Node ids that failed under the mutation (pytest stops at the first)."""
    detail: str = ""
    seconds: float = 0.0
    log: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlResult:
    """The evidence for one control."""

    control: Control
    tests: dict[str, TestStatus]
    """Baseline outcome of each named test (a parametrized test: its worst case)."""
    mutations: tuple[MutationResult, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether every named test passed on the unmutated tree."""
        return bool(self.tests) and all(status == "passed" for status in self.tests.values())

    @property
    def proven(self) -> bool:
        """Whether its tests pass and every mutation of it makes them fail."""
        return self.passed and bool(self.mutations) and all(m.status == "killed" for m in self.mutations)


@dataclass(frozen=True, kw_only=True, slots=True)
class EvidenceRun:
    """The result of :func:`gather_evidence`."""

    controls: tuple[ControlResult, ...]
    problems: tuple[Problem, ...]
    """References of the table that do not hold (nothing was run if there are any)."""
    mutations_run: bool
    seconds: float
    baseline_seconds: float = 0.0
    mutation_seconds: float = 0.0
    forking: bool = False
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No broken reference, every test passed, and (if run) every mutation was killed."""
        if self.problems or not self.controls or not all(c.passed for c in self.controls):
            return False
        return not self.mutations_run or all(c.proven for c in self.controls)


def gather_evidence(
    controls: Sequence[Control],
    *,
    repo: Path,
    servers: TestServers,
    mutations: bool,
    parallel: int = 1,
    timeout: float = RUN_TIMEOUT_S,
    workdir: Path | None = None,
    keep: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> EvidenceRun:
    """Check the table's references, run its tests, and (with ``mutations``) each mutation's.

    Args:
        controls: The rows of the controls table.
        repo: The repository root (a git work tree with ``tests/``).
        servers: Postgres and OpenFGA for the runs.
        mutations: Whether to run the mutations too.
        parallel: How many mutation runs at the same time.
        timeout: Seconds one run may take before it is killed.
        workdir: Where copies and logs go; its logs are kept (default: a temporary directory, removed
            at the end unless ``keep``).
        keep: Keep the copies of the tree too (they are removed after each run otherwise).
        progress: Receives one line per step.

    Raises:
        EvidenceRunError: The tree cannot be listed or the launcher cannot run.
    """
    started = time.monotonic()
    problems = check_references(controls, repo=repo, need_mutations=mutations)
    if problems:
        return EvidenceRun(controls=(), problems=tuple(problems), mutations_run=False, seconds=time.monotonic() - started)
    owned = workdir is None
    root = Path(tempfile.mkdtemp(prefix="mandate-evidence-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    try:
        return _gather(
            controls, repo=repo, servers=servers, mutations=mutations, parallel=parallel, timeout=timeout,
            root=root, keep=keep, progress=progress, started=started,
        )
    finally:
        if owned and not keep:
            shutil.rmtree(root, ignore_errors=True)


def _gather(
    controls: Sequence[Control],
    *,
    repo: Path,
    servers: TestServers,
    mutations: bool,
    parallel: int,
    timeout: float,
    root: Path,
    keep: bool,
    progress: Callable[[str], None],
    started: float,
) -> EvidenceRun:
    files = tree_files(repo)
    baseline_tree = copy_tree(repo, root / "trees" / "baseline", files)
    env = _base_env(os.environ)
    with Launcher(workdir=root) as launcher, _Databases(servers) as databases:
        progress(f"Collecting the tests the table names ({len(controls)} controls) …")
        existing = [path for path in named_test_files(controls) if (repo / path).is_file()]
        collect = Job(
            id="collect", cwd=baseline_tree, args=(*PYTEST_ARGS, "--collect-only", *existing),
            env=databases.env_for("collect", env), log=root / "logs" / "collect.log", timeout=timeout,
        )
        collected = launcher.run([collect], on_start=databases.create, on_done=databases.drop)["collect"]
        problems = check_tests(controls, repo=repo, collected=collected.collected)
        if not problems and collected.exit_code not in (0, 5):
            problems = [Problem(control="-", reference="pytest --collect-only", message=_failure(collected))]
        if problems:
            return EvidenceRun(
                controls=(), problems=tuple(problems), mutations_run=False, seconds=time.monotonic() - started,
                forking=launcher.forking,
            )

        tests = list(dict.fromkeys(test for control in controls for test in control.tests))
        progress(f"Running the {len(tests)} named tests on the unmutated tree …")
        baseline_job = Job(
            id="baseline", cwd=baseline_tree, args=(*PYTEST_ARGS, *tests), env=databases.env_for("baseline", env),
            log=root / "logs" / "baseline.log", timeout=timeout,
        )
        baseline = launcher.run([baseline_job], on_start=databases.create, on_done=databases.drop)["baseline"]
        statuses = {test: _status(test, baseline) for test in tests}
        for control in controls:
            failed = [test for test in control.tests if statuses[test] != "passed"]
            verdict = "passed" if not failed else "FAILED: " + ", ".join(f"{t} ({statuses[t]})" for t in failed)
            progress(f"  {control.id}: tests {verdict}")
        progress(f"Baseline: {baseline.seconds:.0f} s.")

        results = {
            control.id: ControlResult(control=control, tests={t: statuses[t] for t in control.tests})
            for control in controls
        }
        mutation_seconds = 0.0
        if mutations:
            mutation_started = time.monotonic()
            found = _run_mutations(
                controls, results, launcher=launcher, databases=databases, env=env, snapshot=baseline_tree,
                files=files, root=root, parallel=parallel, timeout=timeout, keep=keep, progress=progress,
            )
            for control in controls:
                results[control.id] = ControlResult(
                    control=control, tests=results[control.id].tests,
                    mutations=tuple(found[(control.id, name)] for name in control.mutations),
                )
            mutation_seconds = time.monotonic() - mutation_started
            progress(f"Mutations: {mutation_seconds:.0f} s.")
        if not keep:
            shutil.rmtree(baseline_tree, ignore_errors=True)
        return EvidenceRun(
            controls=tuple(results[control.id] for control in controls), problems=(), mutations_run=mutations,
            seconds=time.monotonic() - started, baseline_seconds=baseline.seconds, mutation_seconds=mutation_seconds,
            forking=launcher.forking, logs={"baseline": str(baseline.log)},
        )


def _run_mutations(
    controls: Sequence[Control],
    results: dict[str, ControlResult],
    *,
    launcher: Launcher,
    databases: _Databases,
    env: dict[str, str],
    snapshot: Path,
    files: list[str],
    root: Path,
    parallel: int,
    timeout: float,
    keep: bool,
    progress: Callable[[str], None],
) -> dict[tuple[str, str], MutationResult]:
    found: dict[tuple[str, str], MutationResult] = {}
    jobs: list[Job] = []
    keys: dict[str, tuple[Control, str]] = {}
    for control in controls:
        for name in control.mutations:
            mutation = mutation_named(name)
            assert mutation is not None  # checked with the references
            if not results[control.id].passed:
                found[(control.id, name)] = MutationResult(
                    name=name, removes=mutation.removes, path=mutation.path, status="not run",
                    detail="its tests already fail on the unmutated tree",
                )
                continue
            job_id = f"{control.id}-{name}"
            # From the baseline's snapshot, not the working tree (which others may be editing meanwhile).
            tree = copy_tree(snapshot, root / "trees" / job_id, files)
            try:
                apply_mutation(mutation, tree)
            except MutationError as exc:
                found[(control.id, name)] = MutationResult(
                    name=name, removes=mutation.removes, path=mutation.path, status="invalid", detail=exc.message
                )
                shutil.rmtree(tree, ignore_errors=True)
                continue
            keys[job_id] = (control, name)
            jobs.append(
                Job(
                    id=job_id, cwd=tree, args=(*PYTEST_ARGS, "-x", *control.tests), env=databases.env_for(job_id, env),
                    log=root / "logs" / f"{job_id}.log", timeout=timeout,
                )
            )
    progress(f"Running {len(jobs)} mutations ({parallel} at a time) …")

    def done(job: Job, result: JobResult) -> None:
        databases.drop(job)
        if not keep:
            shutil.rmtree(job.cwd, ignore_errors=True)
        control, name = keys[job.id]
        outcome = _mutation_result(control, name, result)
        found[(control.id, name)] = outcome
        what = {"killed": "killed by " + ", ".join(outcome.failing), "survived": "SURVIVED: all tests passed"}
        progress(f"  {control.id} {name}: {what.get(outcome.status, outcome.status.upper() + ': ' + outcome.detail)}"
                 f" ({result.seconds:.0f} s)")

    launcher.run(jobs, parallel=parallel, on_start=databases.create, on_done=done)
    return found


def _mutation_result(control: Control, name: str, result: JobResult) -> MutationResult:
    mutation = mutation_named(name)
    assert mutation is not None
    failing = tuple(
        nodeid for test in control.tests for nodeid in matching_tests(test, result.outcomes)
        if result.outcomes[nodeid] in _FAILED
    )
    common = {"name": name, "removes": mutation.removes, "path": mutation.path, "seconds": result.seconds,
              "log": str(result.log) if result.log else None}
    if result.timed_out:
        return MutationResult(**common, status="killed", failing=failing, detail="the tests did not finish in time")
    if failing:
        errored = all(result.outcomes[nodeid] == "error" for nodeid in failing)
        detail = "the test errored in setup or teardown, not in its assertions; see the log" if errored else ""
        return MutationResult(**common, status="killed", failing=failing, detail=detail)
    ran = [nodeid for test in control.tests for nodeid in matching_tests(test, result.outcomes)]
    if result.exit_code == 0 and ran and all(result.outcomes[n] == "passed" for n in ran):
        return MutationResult(**common, status="survived")
    return MutationResult(**common, status="invalid", detail=_failure(result))


def _status(test: str, result: JobResult) -> TestStatus:
    """The outcome of ``test`` in ``result`` (the worst of its cases), or ``not run``."""
    statuses = [result.outcomes[nodeid] for nodeid in matching_tests(test, result.outcomes)]
    if not statuses:
        return "not run"
    for worst in ("error", "failed", "xpassed", "skipped", "xfailed"):
        if worst in statuses:
            return worst  # type: ignore[return-value]
    return "passed"


def _failure(result: JobResult) -> str:
    if result.timed_out:
        return "timed out"
    reason = {2: "interrupted or collection errors", 3: "pytest internal error", 4: "usage error",
              5: "no tests ran", 99: "the run itself failed"}.get(result.exit_code or 0, f"exit code {result.exit_code}")
    first = result.errors[0].strip().splitlines()[-1] if result.errors and result.errors[0].strip() else ""
    return f"{reason}{': ' + first if first else ''} (log: {result.log})"


def _base_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}


def _database_uri(uri: str, name: str) -> str:
    return urlunsplit(urlsplit(uri)._replace(path=f"/{name}"))


class _Databases:
    """A database and an OpenFGA store per run, on the shared servers; dropped after the run."""

    def __init__(self, servers: TestServers) -> None:
        self._servers = servers
        self._names: dict[str, str] = {}

    def __enter__(self) -> _Databases:
        return self

    def __exit__(self, *exc: object) -> None:
        for job_id in list(self._names):
            self._drop(job_id)

    def env_for(self, job_id: str, base: dict[str, str]) -> dict[str, str]:
        name = self._names.setdefault(job_id, f"evidence_{uuid.uuid4().hex[:12]}")
        return {
            **base,
            "MANDATE_DATABASE_URL": _database_uri(self._servers.database_url, name),
            "MANDATE_FGA_API_URL": self._servers.fga_api_url,
            "MANDATE_FGA_STORE_NAME": name.replace("_", "-"),
        }

    def create(self, job: Job) -> None:
        name = self._names[job.id]
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(_database_uri(self._servers.database_url, name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def drop(self, job: Job, result: JobResult | None = None) -> None:
        self._drop(job.id)

    def _drop(self, job_id: str) -> None:
        name = self._names.pop(job_id, None)
        if name is None:
            return
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    @contextmanager
    def _admin(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(_database_uri(self._servers.database_url, "postgres"), autocommit=True) as conn:
            yield conn
