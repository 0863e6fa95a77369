"""The ``mandate`` command line."""

from __future__ import annotations

import argparse
import os
import sys

import httpx
import uvicorn

from mandate.service.audit_cli import add_audit_commands
from mandate.service.ingest_cli import add_ingest_command
from mandate.service.users_cli import add_users_commands
from mandate.service.settings import ConfigurationError, DevSettings, Settings

__all__ = ["main"]


def _serve(settings: Settings) -> None:
    from mandate.audit import tracer_provider_from_env
    from mandate.service.app import create_app

    tracer_provider = tracer_provider_from_env(os.environ)  # OTEL_* picks the exporters
    try:
        app = create_app(settings, tracer_provider=tracer_provider)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    finally:
        tracer_provider.shutdown()  # flush batched spans


def _cmd_dev(args: argparse.Namespace) -> int:
    from mandate.service.devstack import DevStack

    settings = DevSettings()
    if settings.env == "prod":
        print("mandate dev: refuses MANDATE_ENV=prod; use `mandate serve`.", file=sys.stderr)
        return 2
    stack = DevStack(settings)
    print(f"Starting the embedded stack under {settings.data_dir.absolute()} …", flush=True)
    resolved = stack.start()
    print(f"Postgres and OpenFGA ({resolved.fga_api_url}) are up. Mandate: {resolved.public_url}", flush=True)
    print(f"Dev issuer: {resolved.dev_issuer_url} (users alice, dave, bob, carol; password 'demo')", flush=True)
    try:
        _serve(resolved)
    finally:
        stack.stop()
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings()
    try:
        settings.check_production_ready()
    except ConfigurationError as exc:
        print(f"mandate serve: {exc.message}", file=sys.stderr)
        return 2
    if not settings.database_url or not settings.fga_api_url:
        print("mandate serve: set MANDATE_DATABASE_URL and MANDATE_FGA_API_URL (or use `mandate dev`).", file=sys.stderr)
        return 2
    _serve(settings)
    return 0


def _cmd_install_tools(args: argparse.Namespace) -> int:
    from mandate.service._openfga import ensure_openfga_binary

    print(f"OpenFGA: {ensure_openfga_binary(Settings().tools_dir)}")
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    settings = DevSettings()
    from mandate.auth.dev_issuer import DEV_CLI_CLIENT_ID

    form = {"grant_type": "password", "client_id": DEV_CLI_CLIENT_ID, "username": args.user, "password": args.password}
    if args.otp:
        form["otp"] = args.otp
    response = httpx.post(f"{settings.dev_issuer_url}/token", data=form, timeout=10)
    if response.status_code != 200:
        print(f"mandate token: {response.json().get('error', response.status_code)}", file=sys.stderr)
        return 1
    print(response.json()["access_token"])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mandate``."""
    parser = argparse.ArgumentParser(prog="mandate", description="Mandate: agents where identity is the control plane.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("dev", help="start Mandate with embedded Postgres, OpenFGA, dev issuer and demo data").set_defaults(run=_cmd_dev)
    commands.add_parser("serve", help="start Mandate against configured Postgres and OpenFGA").set_defaults(run=_cmd_serve)
    commands.add_parser("install-tools", help="build the pinned OpenFGA server into .tools/bin if missing").set_defaults(run=_cmd_install_tools)
    token = commands.add_parser("token", help="get an access token from the dev issuer (dev only)")
    token.add_argument("user", help="demo user: alice, dave, bob or carol")
    token.add_argument("--password", default="demo")
    token.add_argument("--otp", help="the dev second factor (000000) for an MFA-level token")
    token.set_defaults(run=_cmd_token)
    add_audit_commands(commands)
    add_users_commands(commands)
    add_ingest_command(commands)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
