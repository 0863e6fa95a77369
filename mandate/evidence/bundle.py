"""The evidence bundle: ``evidence.json`` for machines and ``evidence.md`` for people.

Both hold the controls table with the result of every test and mutation, the versions (Mandate,
OpenFGA, the hash of the authorization model, the git commit), the result of verifying the
configured audit chain, and the configuration with every secret redacted.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, SecretBytes, SecretStr

from mandate.audit import ChainReport
from mandate.evidence.runner import ControlResult, EvidenceRun

__all__ = [
    "BUNDLE_FORMAT",
    "REDACTED",
    "chain_summary",
    "collect_versions",
    "redacted_configuration",
    "write_bundle",
]

BUNDLE_FORMAT = "mandate.evidence.v1"
REDACTED = "[redacted]"
"""What a secret's value becomes in the bundle."""
MODEL_PATH = Path("mandate/auth/model.fga")
"""The OpenFGA authorization model, relative to the repository."""
_COMMAND_TIMEOUT_S = 30
_GO_MODULE = re.compile(rb"mod\tgithub\.com/openfga/openfga\t(v[0-9][^\t\n]*)")
_LOG_TIME = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} ")
_SECRET_QUERY = re.compile(r"(?i)((?:password|passwd|secret|token|key)=)[^&]*")


def collect_versions(repo: Path, *, tools_dir: Path) -> dict[str, Any]:
    """What ran: Mandate, Python, OpenFGA (the binary's own words and its Go module version), the
    SHA-256 of ``mandate/auth/model.fga``, and the git commit of ``repo``."""
    binary = tools_dir / "bin" / "openfga"
    model = repo / MODEL_PATH
    return {
        "mandate": _distribution_version("mandate"),
        "python": platform.python_version(),
        "pytest": _distribution_version("pytest"),
        "platform": platform.platform(),
        "openfga_binary": str(binary) if binary.is_file() else None,
        "openfga_version": _openfga_version(binary) if binary.is_file() else "not present",
        "openfga_module": _go_module_version(binary),
        "model_fga_sha256": hashlib.sha256(model.read_bytes()).hexdigest() if model.is_file() else None,
        "git_commit": _command_output(["git", "rev-parse", "HEAD"], cwd=repo),
        "git_uncommitted_changes": bool(_command_output(["git", "status", "--porcelain"], cwd=repo)),
    }


def chain_summary(reports: Sequence[ChainReport]) -> dict[str, Any]:
    """The audit chain verification as the bundle records it (``verified``, ``broken`` or ``empty``)."""
    tenants = [
        {
            "tenant": report.tenant,
            "ok": report.ok,
            "records": report.records,
            "first_seq": report.first_seq,
            "last_seq": report.last_seq,
            "checkpoints": report.checkpoints,
            "sealed_through": report.sealed_through,
            "unsealed": report.unsealed,
            "problem": None if report.problem is None else {
                "kind": report.problem.kind, "seq": report.problem.seq, "record_id": report.problem.record_id,
                "message": report.problem.message,
            },
        }
        for report in reports
    ]
    status = "empty" if not tenants else "verified" if all(t["ok"] for t in tenants) else "broken"
    return {"status": status, "tenants": tenants}


def redacted_configuration(settings: BaseModel) -> dict[str, Any]:
    """``settings`` as JSON-safe data, every secret replaced by :data:`REDACTED`.

    Secrets are the ``SecretStr``/``SecretBytes`` fields (at any depth) and passwords in URLs.
    """
    data = _redact(settings)
    assert isinstance(data, dict)
    return data


def _redact(value: Any) -> Any:
    if isinstance(value, (SecretStr, SecretBytes)):
        return REDACTED if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        return {name: _redact(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, Mapping):
        return {str(key): _redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact(item) for item in value]
    if isinstance(value, str):
        return _redact_url(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


def _redact_url(text: str) -> str:
    """``text`` with the password of a URL, and secret-looking query values, redacted."""
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return REDACTED  # not a URL we can read: do not risk showing a secret in it
    if password:
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        parts = parts._replace(netloc=f"{user}:{REDACTED}@{host}{port}")
    return _SECRET_QUERY.sub(lambda m: m.group(1) + REDACTED, urlunsplit(parts))


def write_bundle(
    directory: Path,
    *,
    run: EvidenceRun,
    versions: Mapping[str, Any],
    audit_chain: Mapping[str, Any],
    configuration: Mapping[str, Any],
    command: str,
) -> tuple[Path, Path]:
    """Write ``evidence.json`` and ``evidence.md`` into ``directory`` (created if needed).

    Args:
        directory: Where the bundle goes.
        run: What :func:`~mandate.evidence.runner.gather_evidence` found.
        versions: From :func:`collect_versions`.
        audit_chain: From :func:`chain_summary`, or ``{"status": "not run", "reason": …}``.
        configuration: From :func:`redacted_configuration`.
        command: The command line that produced the bundle.

    Returns:
        The paths of the JSON and the Markdown file.
    """
    directory.mkdir(parents=True, exist_ok=True)
    document = _document(run, versions=versions, audit_chain=audit_chain, configuration=configuration, command=command)
    json_path, markdown_path = directory / "evidence.json", directory / "evidence.md"
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown_path.write_text(_markdown(document), encoding="utf-8")
    return json_path, markdown_path


def _document(
    run: EvidenceRun,
    *,
    versions: Mapping[str, Any],
    audit_chain: Mapping[str, Any],
    configuration: Mapping[str, Any],
    command: str,
) -> dict[str, Any]:
    mutations = [m for c in run.controls for m in c.mutations]
    return {
        "format": BUNDLE_FORMAT,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "result": "passed" if run.ok else "failed",
        "summary": {
            "controls": len(run.controls),
            "controls_passing": sum(c.passed for c in run.controls),
            "controls_proven_by_mutation": sum(c.proven for c in run.controls),
            "mutations_run": run.mutations_run,
            "mutations_killed": sum(m.status == "killed" for m in mutations),
            "mutations_survived": sum(m.status == "survived" for m in mutations),
            "mutations_invalid": sum(m.status == "invalid" for m in mutations),
            "mutations_not_run": sum(m.status == "not run" for m in mutations),
            "reference_problems": len(run.problems),
        },
        "timings": {
            "total_seconds": round(run.seconds, 1),
            "baseline_seconds": round(run.baseline_seconds, 1),
            "mutation_seconds": round(run.mutation_seconds, 1),
            "forked_runs": run.forking,
        },
        "versions": dict(versions),
        "audit_chain": dict(audit_chain),
        "problems": [
            {"control": p.control, "reference": p.reference, "message": p.message} for p in run.problems
        ],
        "controls": [_control(result) for result in run.controls],
        "configuration": dict(configuration),
    }


def _control(result: ControlResult) -> dict[str, Any]:
    control = result.control
    return {
        "id": control.id,
        "control": control.title,
        "frameworks": control.frameworks,
        "enforced_by": list(control.enforced_by),
        "tests": [{"nodeid": test, "status": status} for test, status in result.tests.items()],
        "passed": result.passed,
        "mutations": [
            {
                "name": m.name, "removes": m.removes, "path": m.path, "status": m.status, "failing": list(m.failing),
                "detail": m.detail, "seconds": m.seconds,
            }
            for m in result.mutations
        ],
        "proven": result.proven,
    }


def _markdown(document: Mapping[str, Any]) -> str:
    summary, versions, chain = document["summary"], document["versions"], document["audit_chain"]
    lines = [
        "# Mandate: evidence for the controls",
        "",
        f"Generated {document['generated_at']} by `{document['command']}`. "
        f"**Result: {document['result'].upper()}.**",
        "",
        f"{summary['controls_passing']} of {summary['controls']} controls pass their tests"
        + (
            f"; {summary['controls_proven_by_mutation']} are proven by mutation ({summary['mutations_killed']} "
            f"mutations killed, {summary['mutations_survived']} survived, {summary['mutations_invalid']} invalid, "
            f"{summary['mutations_not_run']} not run)."
            if summary["mutations_run"] else "; mutations were not run (`--mutations`)."
        ),
        "",
    ]
    if document["problems"]:
        lines += ["## Broken references", ""]
        lines += [f"- {p['control']}: `{p['reference']}`: {p['message']}" for p in document["problems"]]
        lines.append("")
    lines += [
        "## Controls",
        "",
        "| id | control | tests | mutation |",
        "|---|---|---|---|",
    ]
    for control in document["controls"]:
        tests = "<br>".join(f"{_mark(t['status'] == 'passed')} `{t['nodeid']}`" for t in control["tests"])
        mutations = "<br>".join(_mutation_cell(m) for m in control["mutations"]) or "not run"
        lines.append(f"| {control['id']} | {_headline(control['control'])} | {tests} | {mutations} |")
    findings = [
        f"- {c['id']}: mutation `{m['name']}` {m['status']}: {m['removes']}"
        + (f" ({m['detail']})" if m["detail"] else "")
        for c in document["controls"] for m in c["mutations"] if m["status"] != "killed"
    ] + [
        f"- {c['id']}: `{t['nodeid']}` {t['status']}"
        for c in document["controls"] for t in c["tests"] if t["status"] != "passed"
    ]
    lines += ["", "## Findings", ""] + (findings or ["None."])
    lines += [
        "",
        "## Versions",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {name} | {_cell(value)} |" for name, value in versions.items()]
    lines += ["", "## Audit chain", "", f"Status: **{chain.get('status')}**" + (
        f": {chain['reason']}." if chain.get("reason") else ".")]
    if chain.get("tenants"):
        lines.append("")
    for tenant in chain.get("tenants", []):
        state = "OK" if tenant["ok"] else f"BROKEN: {tenant['problem']['message']}"
        lines.append(
            f"- {tenant['tenant']}: {state}; records {tenant['first_seq']}..{tenant['last_seq']}, "
            f"{tenant['checkpoints']} checkpoints, sealed through {tenant['sealed_through']}"
        )
    timings = document["timings"]
    lines += [
        "",
        "## Timings",
        "",
        f"Total {timings['total_seconds']} s; baseline {timings['baseline_seconds']} s; "
        f"mutations {timings['mutation_seconds']} s.",
        "",
        "## Configuration (secrets redacted)",
        "",
        "```json",
        json.dumps(document["configuration"], indent=2, ensure_ascii=False),
        "```",
        "",
    ]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """A table cell showing ``value`` as it is (no code span: values may contain backticks)."""
    return str(value).replace("|", "\\|").replace("`", "'")


def _mark(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def _mutation_cell(mutation: Mapping[str, Any]) -> str:
    status = mutation["status"]
    label = "killed" if status == "killed" else f"**{status.upper()}**"
    return f"`{mutation['name']}`: {label}"


def _headline(title: str) -> str:
    bold = re.search(r"\*\*(.+?)\*\*", title)
    return (bold.group(1) if bold else title[:80]).replace("|", "\\|")


def _distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _command_output(argv: list[str], *, cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603 - fixed commands
            argv, cwd=cwd, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or done.stderr.strip()) if done.returncode == 0 else None


def _openfga_version(binary: Path) -> str | None:
    """What ``openfga version`` says, without the timestamp of its log line."""
    said = _command_output([str(binary), "version"])
    return _LOG_TIME.sub("", said) if said else said


def _go_module_version(binary: Path) -> str | None:
    """The OpenFGA module version recorded in the binary's Go build information."""
    try:
        data = binary.read_bytes()
    except OSError:
        return None
    found = _GO_MODULE.search(data)
    return found.group(1).decode() if found else None
