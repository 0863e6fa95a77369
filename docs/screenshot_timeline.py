"""Take the README's screenshot of the auditor timeline (``docs/audit-timeline.png``).

Starts its own embedded stack (Postgres, OpenFGA) in a temporary directory and Mandate on a free
port, runs the payment demo (alice asks, steps up, bob approves), signs bob in on the approver page
in headless Chromium (Debian's ``chromium`` and ``chromium-driver``) and photographs the whole
timeline of that thread. Run from the repository root::

    PYTHONPATH=. .venv/bin/python docs/screenshot_timeline.py [--output docs/audit-timeline.png]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import httpx

from mandate.api.app import create_app
from mandate.audit import build_tracer_provider
from mandate.devstack.stack import DevStack
from mandate.runtime.settings import DevSettings
from tests.utils.approvals import OTP, pending_payment
from tests.utils.browser import element, headless_chromium, sign_in, submit
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.threads import bearer
from tests.utils.tokens import login

WIDTH = 1100
"""Pixels: the page's content column and the header fit without wrapping."""


def _paid_thread(url: str) -> str:
    """The payment demo run to its end; returns its thread."""
    with httpx.Client(base_url=url, timeout=60) as client:
        thread = pending_payment(client, lambda user, **kw: login(url, user, **kw))
        bob = login(url, "bob", otp=OTP)
        [item] = [a for a in client.get("/approvals", headers=bearer(bob)).json() if a["thread_id"] == thread]
        answer = client.post(
            f"/approvals/{item['id']}/decision", json={"type": "approve", "comment": "invoice checked"},
            headers=bearer(bob),
        )
        answer.raise_for_status()
    return thread


def take(output: Path) -> None:
    """Run the demo on a stack of its own and write the timeline's screenshot to ``output``."""
    data_dir = Path(tempfile.mkdtemp(prefix="mandate-screenshot-"))
    settings = DevSettings(
        env="test", port=free_port(), data_dir=data_dir, tools_dir=Path(".tools").absolute(), fga_port=free_port()
    )
    stack = DevStack(settings, fga_grpc_port=free_port())
    try:
        resolved = stack.start()
        with serve_in_thread(create_app(resolved, tracer_provider=build_tracer_provider()), port=resolved.port) as url:
            thread = _paid_thread(url)
            with headless_chromium(data_dir / "chromium") as browser:
                sign_in(browser, url, "bob")
                browser.get(f"{url}/ui/audit")
                element(browser, "form#filter input[name=thread_id]").send_keys(thread)
                submit(browser, "form#filter button#show")
                height = int(browser.execute_script("return document.documentElement.scrollHeight"))
                browser.set_window_size(WIDTH, height + 120)  # the window's frame; the page gets its full height
                output.parent.mkdir(parents=True, exist_ok=True)
                browser.save_screenshot(str(output))
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"wrote {output}")


def main() -> None:
    """``--output PATH`` (default ``docs/audit-timeline.png``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("docs/audit-timeline.png"))
    take(parser.parse_args().output)


if __name__ == "__main__":
    main()
