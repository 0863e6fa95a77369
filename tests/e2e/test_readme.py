"""The README's walk-through is a test: its shell blocks run, in order, against a running Mandate.

Blocks are taken as written (only ``localhost:8000`` becomes the server under test); a block whose
first line starts with ``# Instead of`` shows an alternative to the block before it and is not run
in the sequence. What the prose says each block shows is asserted on its output.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from mandate.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def walkthrough_blocks() -> list[str]:
    """The shell blocks from "Demo walk-through" up to the SDK section, as written."""
    text = README.read_text()
    section = text[text.index("## Demo walk-through") : text.index("### LangGraph SDK and Studio")]
    return [b for b in _BLOCK.findall(section) if "localhost:8000" in b and not b.startswith("# Instead of")]


def test_readme_walkthrough_runs_as_written(base_url: str, stack_settings: Settings) -> None:
    blocks = walkthrough_blocks()
    assert len(blocks) >= 4
    host = base_url.removeprefix("http://")
    marker = "=====README-BLOCK====="
    script = "set -euo pipefail\n" + f"\necho {marker}\n".join(b.replace("localhost:8000", host) for b in blocks)
    env = {
        **os.environ,
        "MANDATE_ENV": "dev",
        "MANDATE_PORT": str(stack_settings.port),
        "MANDATE_DATA_DIR": str(stack_settings.data_dir),
        "MANDATE_DATABASE_URL": stack_settings.database_url,
        "MANDATE_FGA_API_URL": stack_settings.fga_api_url,
    }
    ran = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr[-2000:]
    outputs = ran.stdout.split(marker)
    assert len(outputs) == len(blocks)
    question, ticket, payment, audit = outputs[:4]
    assert "ACME Master Services Agreement" in question  # alice's answer cites the MSA
    assert '"kind": "consent"' in ticket and "create_ticket: done" in ticket
    assert '"kind": "step_up"' in payment and "urn:mandate:acr:mfa" in payment and '"approval"' in payment
    assert '"status": "approved"' in payment and '"status": "succeeded"' in payment
    assert '"event": "tool.started"' in audit and '"event": "tool.succeeded"' in audit and "send_payment" in audit
    assert "OK" in audit or "intact" in audit.lower()
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.", ran.stdout)
