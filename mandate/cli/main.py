"""The ``mandate`` command line.

Every command imports what it needs when it runs, so ``--help`` and ``mandate token`` never load
the app. Where a command finds its configuration (one rule for all):

- ``mandate dev`` and ``mandate token`` are dev-only: :class:`DevSettings` (refused with ``MANDATE_ENV=prod``).
- ``mandate serve`` is production: :class:`Settings`, refused while anything production needs is missing.
- The operator commands (``audit``, ``users``, ``ingest``) use :class:`Settings` (production) and need
  their ``MANDATE_*`` variables, unless ``--dev`` is given or ``MANDATE_ENV`` is ``dev`` or ``test``:
  then they use :class:`DevSettings`, and what ``MANDATE_DATABASE_URL`` / ``MANDATE_FGA_API_URL``
  leave unset is the embedded stack under ``MANDATE_DATA_DIR`` (attached while ``mandate dev`` runs,
  started for the command and stopped after it otherwise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mandate.runtime.settings import Settings

__all__ = ["CommandError", "build_parser", "dev_option", "main", "operator_settings", "require_configuration"]

DEV_CLI_CLIENT_ID = "mandate-cli"
"""The dev issuer's public client for password logins (``mandate.auth.dev_issuer.DEV_CLI_CLIENT_ID``;
repeated here so that ``mandate token`` does not import the auth room)."""
DEV_OTP = "000000"
"""The dev issuer's one-time password (``mandate token alice --mfa``)."""
TOKEN_TIMEOUT_S = 10.0

_VARIABLES = {
    "MANDATE_DATABASE_URL": lambda s: bool(s.database_url),
    "MANDATE_FGA_API_URL": lambda s: bool(s.fga_api_url),
    "MANDATE_AUDIT_SIGNING_KEY": lambda s: s.audit_signing_key is not None,
    "MANDATE_PSEUDONYM_KEY": lambda s: s.pseudonym_key.get_secret_value() not in ("", _placeholder()),
}

DESCRIPTION = "Mandate: LangGraph agents where identity is the control plane."
EPILOG = """\
Where commands find their configuration:
  dev, token        dev only: embedded stack, dev issuer and demo world (refused with MANDATE_ENV=prod)
  serve             production: every MANDATE_* variable it needs must be set (it lists what is missing)
  audit, users,     production settings from MANDATE_* variables, unless --dev is given or MANDATE_ENV
  ingest            is dev or test: then the embedded stack under MANDATE_DATA_DIR (default .data) is
                    used, attached while `mandate dev` runs, or started for the command and stopped after.

Run `mandate COMMAND --help` for a command's options."""

DEV_DESCRIPTION = """\
Start Mandate for development, with everything embedded:
  - PostgreSQL 18 + pgvector and OpenFGA, their data under MANDATE_DATA_DIR (default .data);
    OpenFGA on 127.0.0.1:MANDATE_FGA_PORT (default 8080);
  - the dev OIDC issuer at <public url>/dev-idp (users alice, dave, bob, carol; password demo;
    one-time password 000000 for an MFA login), and the demo tickets and payments APIs;
  - the demo world (tenants acme and globex, their documents and grants);
  - with MANDATE_TRACES=jaeger, Jaeger (query API on 127.0.0.1:MANDATE_JAEGER_PORT, default 16686),
    receiving every span over OTLP/HTTP.
With MANDATE_IDP=keycloak it also runs the embedded Keycloak (installed on first use, see
`mandate install-tools --keycloak`) on 127.0.0.1:MANDATE_KEYCLOAK_PORT (default 8180) with the demo
realm, and trusts it instead of the dev issuer (`mandate token alice --idp keycloak`). Without it,
Keycloak is neither installed nor started.
Mandate listens on MANDATE_HOST:MANDATE_PORT (default 127.0.0.1:8000). Ctrl-C stops the service
and the embedded servers. Any MANDATE_* variable still overrides a default; MANDATE_ENV=prod is refused."""

SERVE_DESCRIPTION = """\
Start Mandate in production mode, against the Postgres and OpenFGA you configure.
It refuses to start while a production setting is missing or dev-only, and lists each problem
with the variable that fixes it: at least MANDATE_DATABASE_URL, MANDATE_FGA_API_URL,
MANDATE_OIDC_ISSUERS, MANDATE_TOKEN_ENDPOINT, MANDATE_PSEUDONYM_KEY, MANDATE_VAULT_KEY,
MANDATE_AUDIT_SIGNING_KEY and the agents' client secrets (MANDATE_AGENTS). See the README's
"Configuration" and "Production" sections. For a local demo use `mandate dev`."""

TOKEN_DESCRIPTION = """\
Sign in at the issuer of a running `mandate dev` and print the access token. Dev only.
The dev issuer (password grant) is found at <public url>/dev-idp: set MANDATE_PUBLIC_URL (or
MANDATE_HOST / MANDATE_PORT) if the server does not run at http://127.0.0.1:8000. With --idp keycloak
(or MANDATE_IDP=keycloak) the user signs in through the login pages of the embedded Keycloak of
`MANDATE_IDP=keycloak mandate dev`, on 127.0.0.1:MANDATE_KEYCLOAK_PORT (default 8180).

  TOKEN=$(mandate token alice)                   # password login (acr: password)
  TOKEN=$(mandate token alice --mfa)             # MFA login, for step-up and approvals (OTP 000000)
  TOKEN=$(mandate token alice --idp keycloak)    # at Keycloak
  TOKEN=$(mandate token alice --idp keycloak --mfa)  # at Keycloak, with the demo user's TOTP code"""


class CommandError(Exception):
    """Raised when a command cannot run as asked; :func:`main` prints the message and exits 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def dev_option() -> argparse.ArgumentParser:
    """A parent parser adding ``--dev`` to an operator command (``mandate audit verify --dev``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--dev",
        action="store_true",
        default=argparse.SUPPRESS,
        help="use the dev settings and the embedded stack under MANDATE_DATA_DIR (same as `mandate --dev …`)",
    )
    return parent


def operator_settings(args: argparse.Namespace) -> Settings:
    """The settings of an operator command, by the one rule in this module's docstring.

    Raises:
        CommandError: ``--dev`` was given while ``MANDATE_ENV=prod``.
    """
    from mandate.runtime.settings import DevSettings, Settings

    production = Settings()
    if not getattr(args, "dev", False) and production.env == "prod":
        return production
    settings = DevSettings()
    if settings.env == "prod":
        raise CommandError("--dev conflicts with MANDATE_ENV=prod; unset one of them.")
    return settings


def require_configuration(settings: Settings, *variables: str) -> None:
    """In production mode, refuse to run unless every one of ``variables`` is set (one line naming them).

    Dev mode needs nothing: the embedded stack and the dev keys stand in.

    Raises:
        CommandError: Some of them are unset (or, for secrets, still the dev placeholder).
    """
    if settings.env != "prod":
        return
    missing = [name for name in variables if not _VARIABLES[name](settings)]
    if missing:
        names = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " and " + missing[-1]
        raise CommandError(
            f"production mode (MANDATE_ENV=prod) needs {names}; for the embedded dev stack under "
            f"{settings.data_dir} use `mandate --dev …` or MANDATE_ENV=dev."
        )


def _placeholder() -> str:
    from mandate.runtime.settings import DEV_SECRET_PLACEHOLDER

    return DEV_SECRET_PLACEHOLDER


def _serve(settings: Settings, *, otlp_traces_endpoint: str | None = None) -> None:
    import math
    import os

    import uvicorn

    from mandate.api.app import create_app
    from mandate.audit import tracer_provider_from_env
    from mandate.runtime.errors import ProjectError

    environ = dict(os.environ)  # OTEL_* picks the exporters
    if otlp_traces_endpoint:  # the dev stack's Jaeger, besides any exporter OTEL_TRACES_EXPORTER names
        environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = otlp_traces_endpoint
        environ["OTEL_TRACES_EXPORTER"] = ",".join(filter(None, (environ.get("OTEL_TRACES_EXPORTER"), "otlp")))
    tracer_provider = tracer_provider_from_env(environ)
    try:
        try:
            app = create_app(settings, tracer_provider=tracer_provider)
        except ProjectError as exc:
            raise CommandError(exc.message) from None

        class DrainingServer(uvicorn.Server):
            """On SIGTERM/SIGINT the run worker stops claiming at once (and ``/ready`` answers 503)
            while open requests finish; the lifespan then drains or hands back the runs."""

            def handle_exit(self, sig: int, frame: Any) -> None:
                worker = getattr(app.state, "worker", None)
                if worker is not None:
                    worker.begin_drain()
                super().handle_exit(sig, frame)

        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level="info",
            timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_grace_seconds)),
        )
        try:
            DrainingServer(config).run()
        except KeyboardInterrupt:  # Ctrl-C: uvicorn re-raises it once it has shut down, as uvicorn.run swallows it
            pass
    finally:
        tracer_provider.shutdown()  # flush batched spans


def _project(args: argparse.Namespace) -> dict[str, Path]:
    """``--config``: the project whose graphs to serve (else ``MANDATE_PROJECT``, else the built-in graphs)."""
    if args.config is None:
        return {}
    if not args.config.is_file():
        raise CommandError(f"--config {args.config}: no such file; give the project's langgraph.json.")
    return {"project": args.config}


def _cmd_dev(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from mandate.runtime.settings import DevSettings

    settings = DevSettings(**_project(args))
    if settings.env == "prod":
        raise CommandError("refuses MANDATE_ENV=prod; use `mandate serve`.")
    with_keycloak = " and Keycloak" if settings.idp == "keycloak" else ""
    print(f"Starting the embedded stack{with_keycloak} under {settings.data_dir.absolute()} …", flush=True)
    from mandate.devstack.stack import DevStack

    stack = DevStack(settings)
    try:
        # The app's imports (the slow part of a start) run in a thread while this one starts the
        # servers and mostly waits on them. Not the other way round: the servers are told to end
        # when the thread that started them ends (PR_SET_PDEATHSIG is per thread).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-app") as importer:
            imported = importer.submit(_import_app)
            resolved = stack.start()
            imported.result()
        print(f"Postgres and OpenFGA ({resolved.fga_api_url}) are up. Mandate: {resolved.public_url}", flush=True)
        if stack.keycloak is not None:
            print(f"Keycloak: {stack.keycloak.issuer} (users alice, dave, bob, carol; password 'demo'; "
                  "`mandate token alice --idp keycloak`)", flush=True)
        else:
            print(f"Dev issuer: {resolved.dev_issuer_url} (users alice, dave, bob, carol; password 'demo')", flush=True)
        if stack.otlp_traces_endpoint:
            print(f"Jaeger receives every span; a trace: {resolved.trace_link}", flush=True)
        _serve(resolved, otlp_traces_endpoint=stack.otlp_traces_endpoint)
    finally:
        stack.stop()
    return 0


def _import_app() -> None:
    """Import what :func:`_serve` runs, ahead of time."""
    import uvicorn  # noqa: F401

    import mandate.api.app  # noqa: F401


def _cmd_serve(args: argparse.Namespace) -> int:
    from mandate.runtime.settings import ConfigurationError, Settings

    if getattr(args, "dev", False):
        raise CommandError("production only (no --dev); for development use `mandate dev`.")
    settings = Settings(**_project(args))
    try:
        settings.check_production_ready()
    except ConfigurationError as exc:
        raise CommandError(exc.message) from None
    if not settings.database_url or not settings.fga_api_url:
        raise CommandError("set MANDATE_DATABASE_URL and MANDATE_FGA_API_URL (or use `mandate dev`).")
    _serve(settings)
    return 0


def _cmd_install_tools(args: argparse.Namespace) -> int:
    from mandate.devstack.jaeger import ensure_jaeger_binary
    from mandate.devstack.openfga import ensure_openfga_binary
    from mandate.runtime.settings import Settings

    settings = Settings()
    try:
        print(f"OpenFGA: {ensure_openfga_binary(settings.tools_dir)}", flush=True)
        print(f"Jaeger: {ensure_jaeger_binary(settings.tools_dir)}", flush=True)
        if args.keycloak or settings.idp == "keycloak":
            from mandate.devstack.keycloak import ensure_keycloak

            print(f"Keycloak: {ensure_keycloak(settings.tools_dir)}")
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from mandate.runtime.settings import DevSettings

    settings = DevSettings()
    if settings.env == "prod":
        raise CommandError("dev only: there is no dev issuer with MANDATE_ENV=prod; sign in at your issuer.")
    if (args.idp or settings.idp) == "keycloak":
        return _keycloak_token(settings, args)
    form = {"grant_type": "password", "client_id": DEV_CLI_CLIENT_ID, "username": args.user, "password": args.password}
    if args.otp is not None or args.mfa:
        form["otp"] = args.otp or DEV_OTP
    endpoint = f"{settings.dev_issuer_url}/token"
    try:
        status, body = _post_form(endpoint, form)
    except OSError as exc:  # refused, unreachable, timed out (urllib's URLError is an OSError)
        reason = getattr(exc, "reason", exc)
        print(f"mandate token: cannot reach the dev issuer at {settings.dev_issuer_url} ({reason}); "
              "is `mandate dev` running? (MANDATE_PUBLIC_URL says where it listens)", file=sys.stderr)
        return 1
    if status == 200 and isinstance(body.get("access_token"), str):
        print(body["access_token"])
        return 0
    print(_token_refusal(status, body, endpoint=endpoint, args=args), file=sys.stderr)
    return 1


def _keycloak_token(settings: Settings, args: argparse.Namespace) -> int:
    """Sign in through the login pages of the embedded Keycloak of ``MANDATE_IDP=keycloak mandate dev``."""
    import httpx

    from mandate.devstack.keycloak import demo_login, local_issuer

    if args.otp is not None:
        raise CommandError("--otp is the dev issuer's; at Keycloak use --mfa (the demo user's TOTP code is computed).")
    issuer = local_issuer(settings.keycloak_port)
    try:
        print(demo_login(issuer, args.user, password=args.password, mfa=args.mfa, timeout=TOKEN_TIMEOUT_S))
    except httpx.TransportError as exc:
        print(f"mandate token: cannot reach Keycloak at {issuer} ({exc.__class__.__name__}); is "
              "`MANDATE_IDP=keycloak mandate dev` running? (MANDATE_KEYCLOAK_PORT says where)", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"mandate token: {exc}", file=sys.stderr)
        return 1
    return 0


def _post_form(url: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST a form and read a JSON object back (``{}`` if the answer is not one); stdlib only, to stay fast.

    Raises:
        OSError: No answer (connection refused, unreachable, timed out).
    """
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    request = urllib.request.Request(
        url, data=urllib.parse.urlencode(form).encode(), method="POST", headers={"Accept": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TOKEN_TIMEOUT_S) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return status, body if isinstance(body, dict) else {}


def _token_refusal(status: int, body: dict[str, Any], *, endpoint: str, args: argparse.Namespace) -> str:
    """One line saying why there is no token, in the issuer's own words where it gives them."""
    error, description = body.get("error"), body.get("error_description")
    if error == "invalid_grant":
        return f"mandate token: the dev issuer refused to sign in {args.user!r}: {description or error}"
    if error:
        return f"mandate token: the dev issuer refused the request: {description or error} ({error})"
    return f"mandate token: {endpoint} answered HTTP {status}, not a token; is a `mandate dev` server running there?"


def build_parser() -> argparse.ArgumentParser:
    """The ``mandate`` argument parser, with every command registered (imports nothing heavy)."""
    from mandate.cli.audit import add_audit_commands
    from mandate.cli.controls import add_controls_commands
    from mandate.cli.ingest import add_ingest_command
    from mandate.cli.users import add_users_commands

    parser = argparse.ArgumentParser(
        prog="mandate", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dev", action="store_true",
        help="operator commands use the dev settings and the embedded stack under MANDATE_DATA_DIR",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config", type=Path, metavar="LANGGRAPH_JSON",
        help="serve this project's graphs under the policies of the mandate.yaml beside it (default: the built-in graphs)",
    )
    commands.add_parser(
        "dev", help="start Mandate with embedded Postgres, OpenFGA, dev issuer and demo data",
        description=DEV_DESCRIPTION, formatter_class=raw, parents=[config],
    ).set_defaults(run=_cmd_dev)
    commands.add_parser(
        "serve", help="start Mandate in production mode against the configured Postgres and OpenFGA",
        description=SERVE_DESCRIPTION, formatter_class=raw, parents=[config],
    ).set_defaults(run=_cmd_serve)
    install_tools = commands.add_parser(
        "install-tools", help="build the pinned OpenFGA and Jaeger servers into MANDATE_TOOLS_DIR/bin (.tools/bin) if missing",
        description="Build the pinned OpenFGA server (`go install`) and Jaeger (from the Go module proxy) into "
        "MANDATE_TOOLS_DIR/bin (default .tools/bin) unless they are there, and print their paths. "
        "Needs Go the first time (Jaeger's first build takes several minutes). "
        "With --keycloak (or MANDATE_IDP=keycloak) also install the pinned Keycloak into "
        "MANDATE_TOOLS_DIR/keycloak-<version>: downloaded once into ~/.cache/mandate and built there "
        "(needs Java 21+), then unpacked from that cache.",
    )
    install_tools.add_argument(
        "--keycloak", action="store_true", help="also install Keycloak, for `MANDATE_IDP=keycloak mandate dev`"
    )
    install_tools.set_defaults(run=_cmd_install_tools)
    token = commands.add_parser(
        "token", help="print an access token from the dev issuer of `mandate dev` (dev only)",
        description=TOKEN_DESCRIPTION, formatter_class=raw,
    )
    token.add_argument("user", help="who signs in: a demo user (alice, dave, bob or carol)")
    token.add_argument("--password", default="demo", help="their password (default: demo, as for every demo user)")
    token.add_argument(
        "--otp", metavar="CODE", help="the dev issuer's one-time password (000000) for an MFA login (acr mfa, amr pwd+otp)"
    )
    token.add_argument(
        "--mfa", action="store_true",
        help="an MFA login: the dev issuer's one-time password, or at Keycloak the demo user's TOTP code",
    )
    token.add_argument(
        "--idp", choices=("dev", "keycloak"),
        help="where to sign in: the dev issuer or the embedded Keycloak (default: MANDATE_IDP, else dev)",
    )
    token.set_defaults(run=_cmd_token)
    add_audit_commands(commands)
    add_users_commands(commands)
    add_ingest_command(commands)
    add_controls_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mandate``."""
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    name = " ".join(part for part in (args.command, getattr(args, f"{args.command}_action", None)) if part)
    try:
        return int(args.run(args))
    except CommandError as exc:
        print(f"mandate {name}: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        problems = "; ".join(_setting_problem(error["loc"], error["msg"]) for error in exc.errors())
        print(f"mandate {name}: invalid configuration: {problems}", file=sys.stderr)
        return 2


def _setting_problem(loc: tuple[Any, ...], message: str) -> str:
    """``MANDATE_PORT: Input should be a valid integer`` for one validation error of the settings."""
    if not loc:
        return message
    where = ".".join(str(part) for part in loc[1:])
    return f"MANDATE_{str(loc[0]).upper()}{f' ({where})' if where else ''}: {message}"


if __name__ == "__main__":
    sys.exit(main())
