"""The embedded Keycloak for dev and tests: the real server from Maven Central, run as a subprocess on loopback.

:func:`ensure_keycloak` installs the pinned release once into ``<tools_dir>/keycloak-<version>``:

- the archive is downloaded once into a cache outside the repository (``~/.cache/mandate``), so a
  fresh clone on the same machine does not download it again, and is checked against its SHA-256;
- the server is built once (``kc.sh build``, Quarkus re-augmentation, the slow part) and a database
  template is made once (schema and master realm, the other slow part); both are cached beside the
  archive, so a fresh clone only unpacks and copies them.

:class:`EmbeddedKeycloak` then runs that install from a run directory of its own (the install stays
read-only and shared): ``kc.sh start --optimized`` with the embedded H2 file database copied from the
template, the HTTP and management interfaces on 127.0.0.1 only, local caches (no clustering), and
the realm files of ``infra/keycloak`` imported at start with their ``${MANDATE_*}`` placeholders
filled from :func:`realm_environment`. ``start-dev`` is not used: it re-augments the server at every
start (tens of seconds to minutes on two cores). It waits until ``/health/ready`` answers and the
realm's discovery document names the expected issuer.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from pydantic import SecretStr

from mandate.auth import Relationship
from mandate.auth import vocabulary as fga
from mandate.devstack._process import LOOPBACK, ChildServer, free_port, log_tail
from mandate.runtime.settings import DEV_ISSUER_KEY, DEV_SECRET_PLACEHOLDER, IssuerSettings, Settings

__all__ = [
    "KEYCLOAK_ARCHIVE_BYTES",
    "KEYCLOAK_ISSUER_KEY",
    "KEYCLOAK_REALM",
    "KEYCLOAK_VERSION",
    "REALM_FILE",
    "UI_CLIENT_ID",
    "EmbeddedKeycloak",
    "demo_login",
    "demo_otp",
    "demo_relationships",
    "demo_subject",
    "dev_keycloak",
    "ensure_keycloak",
    "find_java_home",
    "local_issuer",
    "realm_environment",
    "trust_keycloak",
]

KEYCLOAK_VERSION = "26.7.3"
"""The pinned Keycloak release (``org.keycloak:keycloak-quarkus-dist``, newest 26.x on Maven Central)."""
KEYCLOAK_ARCHIVE_URL = (
    "https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/{version}/keycloak-quarkus-dist-{version}.tar.gz"
)
KEYCLOAK_ARCHIVE_SHA256 = "77657f30b7e90d70f727712ce1c967f430fd6a5e9f458d32d8c6df0635345f47"
"""SHA-256 of the pinned archive (the value Maven Central publishes in ``….tar.gz.sha256``)."""
KEYCLOAK_ARCHIVE_BYTES = 176_448_763
"""Size of the pinned archive: what the first install downloads."""
KEYCLOAK_REALM = "mandate"
"""The realm of ``infra/keycloak/mandate-realm.json``; the issuer is ``<base>/realms/mandate``."""
KEYCLOAK_ISSUER_KEY = "kc"
"""The issuer id Mandate gives the embedded Keycloak: its users are ``user:kc|<sub>`` in OpenFGA."""
KEYCLOAK_TENANTS = ("acme", "globex")
"""The tenants the embedded Keycloak may assert (the realm's eve, tenant ``initech``, is refused)."""
UI_CLIENT_ID = "mandate-approver-page"
"""The approver page's client in the realm."""
REALM_FILE = Path(__file__).resolve().parents[2] / "infra" / "keycloak" / "mandate-realm.json"
"""The demo realm, imported at every start of the embedded server."""

MIN_JAVA_MAJOR = 21
"""Keycloak 26 needs Java 21 or newer."""
JAVA_HOME_CANDIDATES = (Path("/usr/lib/jvm/temurin-25-jdk-amd64"), Path("/usr/lib/jvm/temurin-21-jdk-amd64"))
"""Where :func:`find_java_home` looks first (this machine's default ``java`` is 17)."""
BUILD_OPTIONS = ("--db=dev-file", "--health-enabled=true")
"""Build-time options of the installed server (``kc.sh build``); the run adds only runtime options."""
JAVA_OPTS_APPEND = "-XX:TieredStopAtLevel=1"
"""C1 only: about 40 % less CPU to start (measured), and a short-lived test server never needs C2."""
DEFAULT_START_TIMEOUT = 300.0
"""Seconds :meth:`EmbeddedKeycloak.start` waits for readiness (two busy cores can make it slow)."""
DEFAULT_STOP_TIMEOUT = 30.0
"""Seconds to wait after SIGTERM before SIGKILL."""
BUILD_TIMEOUT = 900.0
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, read=120.0)
_LOG_NOISE = ("WARNING:",)
"""Prefix of the JVM's warnings, left out of the log tails quoted in errors."""
_INSTALL_LINKS = ("bin", "conf", "lib", "providers", "themes")
"""What a run directory links from the install; ``data/`` is its own."""
_TEMPLATE_DIR = "mandate-template"
"""Inside the install: the database template (``h2/``) made by :func:`ensure_keycloak`."""
_READY_MARKER = ".mandate-ready"

DEMO_SUBJECTS: Mapping[str, str] = {
    "alice": "a11ce000-0000-4000-8000-000000000001",
    "bob": "b0b00000-0000-4000-8000-000000000002",
    "carol": "ca201000-0000-4000-8000-000000000003",
    "dave": "da7e0000-0000-4000-8000-000000000004",
    "eve": "e7e00000-0000-4000-8000-000000000005",
}
"""The demo users' ``sub`` at Keycloak: fixed ids in the realm file, so their OpenFGA grants are stable.
eve (tenant ``initech``) exists to show that a tenant not configured for the issuer is refused."""

_BUILD_NOTICE = "Installing Keycloak {version} into {home} (built once per machine, then unpacked and reused)…"
_DOWNLOAD_NOTICE = "Downloading Keycloak {version} ({megabytes} MB) into {path} (once per machine)…"


def _recipe() -> str:
    """What the built install depends on; a change rebuilds it."""
    return json.dumps({"version": KEYCLOAK_VERSION, "build": BUILD_OPTIONS}, sort_keys=True)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mandate``, else ``~/.cache/mandate``: outside any clone, shared by all of them."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mandate"


def _java_major(java_home: Path) -> int | None:
    try:
        release = (java_home / "release").read_text()
    except OSError:
        return None
    found = re.search(r'^JAVA_VERSION="(\d+)', release, re.MULTILINE)
    return int(found.group(1)) if found else None


def find_java_home(candidates: Sequence[Path] = JAVA_HOME_CANDIDATES) -> Path:
    """A JDK of Java 21 or newer: the candidates, then ``$JAVA_HOME``, then ``java`` on ``PATH``.

    Raises:
        RuntimeError: No Java 21+ was found; the message says where it looked.
    """
    homes = [*candidates]
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    on_path = shutil.which("java")
    if on_path is not None:
        homes.append(Path(on_path).resolve().parent.parent)
    for home in homes:
        major = _java_major(home)
        if major is not None and major >= MIN_JAVA_MAJOR and (home / "bin" / "java").is_file():
            return home
    looked = ", ".join(str(home) for home in homes) or "nowhere"
    raise RuntimeError(f"Keycloak {KEYCLOAK_VERSION} needs Java {MIN_JAVA_MAJOR}+; none found (looked at {looked})")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path``: two sessions installing at once take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached_archive(cache_dir: Path) -> Path:
    """The verified archive in ``cache_dir``, downloaded if it is missing or damaged."""
    archive = cache_dir / f"keycloak-quarkus-dist-{KEYCLOAK_VERSION}.tar.gz"
    with _locked(cache_dir / ".keycloak-download.lock"):
        if archive.is_file() and _sha256(archive) == KEYCLOAK_ARCHIVE_SHA256:
            return archive
        url = KEYCLOAK_ARCHIVE_URL.format(version=KEYCLOAK_VERSION)
        megabytes = KEYCLOAK_ARCHIVE_BYTES // 1_000_000
        print(_DOWNLOAD_NOTICE.format(version=KEYCLOAK_VERSION, megabytes=megabytes, path=cache_dir), file=sys.stderr)
        partial = archive.with_name(archive.name + ".part")
        try:
            with httpx.stream("GET", url, follow_redirects=True, timeout=DOWNLOAD_TIMEOUT) as response:
                response.raise_for_status()
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"downloading Keycloak from {url} failed: {exc}") from exc
        if _sha256(partial) != KEYCLOAK_ARCHIVE_SHA256:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"the Keycloak archive from {url} does not have the pinned SHA-256; refusing it")
        partial.replace(archive)
        return archive


def ensure_keycloak(tools_dir: Path, *, cache_dir: Path | None = None, java_home: Path | None = None) -> Path:
    """Return the built Keycloak install in ``<tools_dir>/keycloak-<version>``, installing it if needed.

    Unpacks the cached archive (downloading it once), then restores the build and the database
    template from the cache, or makes them (``kc.sh build``; one start and stop without a realm)
    and caches them for the next clone.

    Args:
        tools_dir: Directory that receives ``keycloak-<version>/``.
        cache_dir: Cache outside the repository; default :func:`default_cache_dir`.
        java_home: JDK 21+ for the build; default :func:`find_java_home`.

    Returns:
        The install directory.

    Raises:
        RuntimeError: Download, checksum, build or template start failed; the message says which.
    """
    tools = Path(tools_dir).expanduser().resolve()
    home = tools / f"keycloak-{KEYCLOAK_VERSION}"
    marker = home / _READY_MARKER
    if marker.is_file() and marker.read_text() == _recipe():
        return home
    cache = (cache_dir or default_cache_dir()).expanduser().resolve()
    with _locked(tools / f".keycloak-{KEYCLOAK_VERSION}.lock"):
        if marker.is_file() and marker.read_text() == _recipe():
            return home
        print(_BUILD_NOTICE.format(version=KEYCLOAK_VERSION, home=home), file=sys.stderr, flush=True)
        archive = _cached_archive(cache)
        java = java_home or find_java_home()
        staging = Path(tempfile.mkdtemp(prefix=f".keycloak-{KEYCLOAK_VERSION}-", dir=tools))
        try:
            with tarfile.open(archive) as tar:
                if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: refuse links and paths outside staging
                    tar.extractall(staging, filter="data")
                else:
                    tar.extractall(staging)
            unpacked = staging / f"keycloak-{KEYCLOAK_VERSION}"
            _restore_or_build(unpacked, cache=cache, java_home=java)
            if home.exists():
                shutil.rmtree(home)
            unpacked.replace(home)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        marker.write_text(_recipe())
    return home


def _restore_or_build(install: Path, *, cache: Path, java_home: Path) -> None:
    """Give ``install`` its build (``lib/quarkus``) and database template, from the cache or made now."""
    prebuilt = cache / f"keycloak-{KEYCLOAK_VERSION}-{hashlib.sha256(_recipe().encode()).hexdigest()[:12]}"
    with _locked(cache / ".keycloak-build.lock"):
        if not (prebuilt / _READY_MARKER).is_file():
            _build(install, java_home=java_home)
            _make_template(install, java_home=java_home)
            fresh = Path(tempfile.mkdtemp(prefix=".prebuilt-", dir=cache))
            fresh.chmod(0o755)
            shutil.copytree(install / "lib" / "quarkus", fresh / "quarkus")
            shutil.copytree(install / _TEMPLATE_DIR, fresh / _TEMPLATE_DIR)
            (fresh / _READY_MARKER).write_text(_recipe())
            shutil.rmtree(prebuilt, ignore_errors=True)
            fresh.replace(prebuilt)
            return
    shutil.copytree(prebuilt / "quarkus", install / "lib" / "quarkus", dirs_exist_ok=True)
    shutil.copytree(prebuilt / _TEMPLATE_DIR, install / _TEMPLATE_DIR)


def _build(install: Path, *, java_home: Path) -> None:
    log = install / "build.log"
    with log.open("wb") as out:
        try:
            result = subprocess.run(
                [str(install / "bin" / "kc.sh"), "build", *BUILD_OPTIONS],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_child_env(java_home),
                cwd=install,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"`kc.sh build` timed out; log {log}:\n{_tail(log)}") from exc
    if result.returncode != 0:
        raise RuntimeError(f"`kc.sh build` failed (exit {result.returncode}); log {log}:\n{_tail(log)}")


def _make_template(install: Path, *, java_home: Path) -> None:
    """Start the server once without a realm and stop it: its database (schema, master realm) is the template."""
    with tempfile.TemporaryDirectory(prefix="keycloak-template-") as scratch:
        run_dir = Path(scratch)
        server = EmbeddedKeycloak(
            home=install,
            java_home=java_home,
            http_port=free_port(),
            management_port=free_port(),
            run_dir=run_dir,
            log_path=run_dir / "keycloak.log",
            realm_files=(),
            use_template=False,
        )
        try:
            server.start(check_realm=False)
        finally:
            server.stop()
        shutil.copytree(
            run_dir / "data" / "h2", install / _TEMPLATE_DIR / "h2", ignore=shutil.ignore_patterns("*.trace.db")
        )


def realm_environment(
    *,
    public_url: str,
    audience: str,
    tickets_api_url: str,
    payments_api_url: str,
    ui_client_secret: str,
    agent_secrets: Mapping[str, str],
) -> dict[str, str]:
    """The values of the realm file's ``${MANDATE_*}`` placeholders, from Mandate's settings.

    Args:
        public_url: Mandate's public URL (the approver page's redirect and post-logout URIs).
        audience: The audience Mandate requires (added to user access tokens).
        tickets_api_url: Tickets API URL: a client of the realm, the audience of exchanged tokens.
        payments_api_url: Payments API URL, likewise.
        ui_client_secret: Secret of the approver page's client ``mandate-approver-page``.
        agent_secrets: Secrets of the agent clients by client id (``agent-executor``, ``agent-operations``).
    """
    environment = {
        "MANDATE_PUBLIC_URL": public_url.rstrip("/"),
        "MANDATE_AUDIENCE": audience,
        "MANDATE_TICKETS_API_URL": tickets_api_url,
        "MANDATE_PAYMENTS_API_URL": payments_api_url,
        "MANDATE_UI_CLIENT_SECRET": ui_client_secret,
    }
    for client_id, secret in agent_secrets.items():
        environment[f"MANDATE_{client_id.upper().replace('-', '_')}_SECRET"] = secret
    return environment


def dev_keycloak(
    settings: Settings, *, home: Path, java_home: Path, run_dir: Path, http_port: int, management_port: int
) -> EmbeddedKeycloak:
    """An embedded Keycloak (not started) whose realm fits ``settings``: its URLs, audience and client secrets.

    The agents' secrets are those of ``settings.agents``; the approver page's is ``ui_client_secret``
    (the dev placeholder when unset, as the agents' are in dev).
    """
    return EmbeddedKeycloak(
        home=home,
        java_home=java_home,
        http_port=http_port,
        management_port=management_port,
        run_dir=run_dir,
        log_path=run_dir / "keycloak.log",
        environment=realm_environment(
            public_url=settings.public_url,
            audience=settings.audience,
            tickets_api_url=settings.tickets_api_url,
            payments_api_url=settings.payments_api_url,
            ui_client_secret=_ui_secret(settings),
            agent_secrets={
                agent.client_id: agent.client_secret.get_secret_value() for agent in settings.agents.values()
            },
        ),
    )


def trust_keycloak(settings: Settings, keycloak: EmbeddedKeycloak) -> dict[str, Any]:
    """Settings updates for a Mandate that trusts ``keycloak`` (only): issuer, exchange endpoint, page client.

    Use as ``settings.model_copy(update=trust_keycloak(settings, keycloak))``.
    """
    return {
        "oidc_issuers": [
            IssuerSettings(
                issuer=keycloak.issuer,
                id=KEYCLOAK_ISSUER_KEY,
                tenants=list(KEYCLOAK_TENANTS),
                require_at_jwt=False,  # Keycloak's header says typ JWT ...
                typ_claim="Bearer",  # ... and its payload tells access ("Bearer") from ID ("ID") tokens
            )
        ],
        "token_endpoint": keycloak.token_endpoint,
        "ui_oidc_issuer": keycloak.issuer,
        "ui_client_id": UI_CLIENT_ID,
        "ui_client_secret": SecretStr(_ui_secret(settings)),
    }


def _ui_secret(settings: Settings) -> str:
    return settings.ui_client_secret.get_secret_value() or DEV_SECRET_PLACEHOLDER


def demo_subject(username: str) -> str:
    """The Keycloak ``sub`` of a demo user (``alice`` …).

    Raises:
        KeyError: Not a demo user of the realm file.
    """
    return DEMO_SUBJECTS[username]


def demo_relationships(issuer_key: str) -> tuple[Relationship, ...]:
    """The demo world's grants for the Keycloak users: the dev issuer's user tuples, re-qualified.

    Every tuple of ``DEMO_RELATIONSHIPS`` whose user is a dev issuer user (``user:dev|alice``)
    is repeated for the same person at Keycloak (``user:<issuer_key>|<uuid>``); the tuples of
    folders, tools and agents are the dev world's and are seeded with it. Documents shared with one
    user by name (ACME payroll, with bob) are not re-shared: that needs re-ingestion.
    """
    from mandate.devstack.demo.world import DEMO_RELATIONSHIPS  # the demo world loads retrieval: only when asked

    renamed = {fga.user(DEV_ISSUER_KEY, name): fga.user(issuer_key, sub) for name, sub in DEMO_SUBJECTS.items()}
    return tuple(
        Relationship(renamed[rel.user], rel.relation, rel.object) for rel in DEMO_RELATIONSHIPS if rel.user in renamed
    )


DEMO_PASSWORD = "demo"
DEMO_CLI_CLIENT = "mandate-cli"
_LOOPBACK_REDIRECT = "http://127.0.0.1/callback"
_FORM_ACTION = re.compile(r'<form[^>]*\baction="([^"]+)"', re.S)


def demo_otp(username: str, *, at: float | None = None) -> str:
    """The current one-time code of a demo user (RFC 6238, HMAC-SHA1, 6 digits, 30 s; dev only).

    The realm seeds each user's TOTP secret as the bytes of ``mandate-demo-totp-<user>``; in an
    authenticator app that is the base32 of those bytes (``infra/keycloak/README.md``).
    """
    counter = int((time.time() if at is None else at) // 30)
    mac = hmac.new(f"mandate-demo-totp-{username}".encode(), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def local_issuer(http_port: int) -> str:
    """The issuer of the embedded Keycloak's realm when it listens on ``http_port`` (loopback)."""
    return f"http://{LOOPBACK}:{http_port}/realms/{KEYCLOAK_REALM}"


def demo_login(
    issuer: str, username: str, *, password: str = DEMO_PASSWORD, mfa: bool = False, timeout: float = 60.0
) -> str:
    """A demo user's access token through the realm's login pages (code + PKCE, public CLI client; dev only).

    What ``mandate token alice --idp keycloak`` prints: Keycloak's password grant ignores levels
    of authentication, so an MFA token (``acr`` ``urn:mandate:acr:mfa``, fresh ``auth_time``) comes
    only from the login pages, here filled in with the password (``demo``) and :func:`demo_otp`.

    Raises:
        RuntimeError: Keycloak did not sign the user in.
        httpx.TransportError: Nothing answered at ``issuer``.
    """
    verifier = secrets.token_urlsafe(48)
    params = {
        "client_id": DEMO_CLI_CLIENT,
        "response_type": "code",
        "redirect_uri": _LOOPBACK_REDIRECT,
        "scope": "openid",
        "state": secrets.token_urlsafe(16),
        "code_challenge": base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    if mfa:
        params["acr_values"] = "urn:mandate:acr:mfa"
    cookies: dict[str, str] = {}  # Keycloak's cookies are Secure even on loopback HTTP: kept by hand

    def send(method: str, url: str, **kwargs: Any) -> httpx.Response:
        header = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
        answer = http.request(method, url, headers=header, **kwargs)
        for line in answer.headers.get_list("set-cookie"):
            name, _, rest = line.partition("=")
            cookies[name.strip()] = rest.split(";", 1)[0]
        return answer

    def action(page: httpx.Response) -> str:
        found = _FORM_ACTION.search(page.text)
        if page.status_code != 200 or found is None:
            raise RuntimeError(f"Keycloak did not show its login form to {username} ({page.status_code})")
        return html.unescape(found.group(1))

    with httpx.Client(timeout=timeout, follow_redirects=False) as http:
        page = send("GET", f"{issuer}/protocol/openid-connect/auth?{urlencode(params)}")
        answer = send("POST", action(page), data={"username": username, "password": password})
        if answer.status_code == 200 and 'name="otp"' in answer.text:
            answer = send("POST", action(answer), data={"otp": demo_otp(username)})
        code = parse_qs(urlsplit(answer.headers.get("location", "")).query).get("code")
        if answer.status_code != 302 or not code:
            raise RuntimeError(f"Keycloak did not sign {username} in ({answer.status_code})")
        tokens = http.post(
            f"{issuer}/protocol/openid-connect/token",
            data={
                "grant_type": "authorization_code",
                "code": code[0],
                "redirect_uri": _LOOPBACK_REDIRECT,
                "code_verifier": verifier,
                "client_id": DEMO_CLI_CLIENT,
            },
        )
    if tokens.status_code != 200:
        raise RuntimeError(f"Keycloak refused the code of {username} ({tokens.status_code})")
    return str(tokens.json()["access_token"])


class EmbeddedKeycloak:
    """Keycloak as a child process, from a shared install and a run directory of its own, on loopback only."""

    def __init__(
        self,
        *,
        home: Path,
        java_home: Path,
        http_port: int,
        management_port: int,
        run_dir: Path,
        log_path: Path,
        realm_files: Sequence[Path] = (REALM_FILE,),
        environment: Mapping[str, str] | None = None,
        use_template: bool = True,
    ) -> None:
        """Prepare (but do not start) the server.

        Args:
            home: The install (see :func:`ensure_keycloak`); never written to.
            java_home: JDK 21+ (see :func:`find_java_home`).
            http_port: Loopback port of the HTTP interface (the issuer's).
            management_port: Loopback port of the management interface (``/health``).
            run_dir: Its own directory: ``data/`` (database, import, transaction logs) lives here.
                A database already there is reused; otherwise the template is copied in.
            log_path: File that receives the server's output (appended).
            realm_files: Realm files imported at start (a realm that exists already is kept).
            environment: Values of the realm files' ``${…}`` placeholders (:func:`realm_environment`).
            use_template: Copy the install's database template into a run directory without a
                database (``False`` starts empty: creating the schema takes a while).
        """
        self._home = Path(home).absolute()
        self._java_home = Path(java_home)
        self._http_port = http_port
        self._management_port = management_port
        self._run_dir = Path(run_dir).absolute()
        self._realm_files = tuple(Path(path) for path in realm_files)
        self._environment = dict(environment or {})
        self._template = self._home / _TEMPLATE_DIR / "h2" if use_template else None
        # Its own process group: stop() ends kc.sh and the Java server it runs together.
        self._server = ChildServer(
            name="Keycloak", log_path=log_path, stop_timeout=DEFAULT_STOP_TIMEOUT, own_group=True, log_noise=_LOG_NOISE
        )
        self._started_in: float | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<http_port>``."""
        return f"http://{LOOPBACK}:{self._http_port}"

    @property
    def issuer(self) -> str:
        """The realm's issuer identifier (``iss`` of its tokens)."""
        return local_issuer(self._http_port)

    @property
    def token_endpoint(self) -> str:
        """The realm's token endpoint (password, code and token-exchange grants)."""
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def pid(self) -> int | None:
        """Process id of the launcher (``kc.sh``) while it runs, else ``None``."""
        return self._server.pid

    @property
    def started_in(self) -> float | None:
        """Seconds the last :meth:`start` took until ready (printed by the test fixtures, never asserted)."""
        return self._started_in

    def start(self, *, timeout: float = DEFAULT_START_TIMEOUT, check_realm: bool = True) -> str:
        """Start the server and wait until it is ready and its realm is served. Idempotent.

        Args:
            timeout: Seconds to wait for ``/health/ready`` and the realm's discovery document.
            check_realm: Also wait for the realm's discovery document (off for the template run).

        Returns:
            The issuer, ``http://127.0.0.1:<http_port>/realms/mandate``.

        Raises:
            RuntimeError: The server exited or was not ready in time; the message ends with its log.
        """
        if self.pid is not None:
            return self.issuer
        self.stop()
        began = time.monotonic()
        self._prepare_run_dir()
        try:
            self._server.spawn(self._run_args(), env=self._run_env(), cwd=self._run_dir)
            self._server.wait_ready(
                partial(self._ready, check_realm=check_realm),
                timeout=timeout,
                waiting_for="readiness" + (" and realm" if check_realm else ""),
                poll=0.25,
                request_timeout=5.0,
            )
        except BaseException:
            self.stop()
            raise
        self._started_in = time.monotonic() - began
        return self.issuer

    def stop(self) -> None:
        """SIGTERM the launcher (``kc.sh`` forwards it to Java and waits for it), SIGKILL the group if needed.

        Idempotent.
        """
        self._server.stop()

    def _prepare_run_dir(self) -> None:
        data = self._run_dir / "data"
        (data / "import").mkdir(parents=True, exist_ok=True)
        for name in _INSTALL_LINKS:
            link = self._run_dir / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(self._home / name, target_is_directory=True)
        for old in (data / "import").glob("*.json"):
            old.unlink()
        for realm_file in self._realm_files:
            shutil.copyfile(realm_file, data / "import" / realm_file.name)
        if self._template is not None and not (data / "h2").exists():
            shutil.copytree(self._template, data / "h2")

    def _run_args(self) -> list[str]:
        args = [
            str(self._home / "bin" / "kc.sh"),
            f"-Dkc.home.dir={self._run_dir}",  # data/ (database, import) is the run's; lib/ links to the install
            "start",
            "--optimized",
            "--http-enabled=true",
            f"--http-host={LOOPBACK}",
            f"--http-port={self._http_port}",
            f"--hostname={self.base_url}",
            f"--http-management-port={self._management_port}",
            "--cache=local",
        ]
        if self._realm_files:
            args.append("--import-realm")
        return args

    def _run_env(self) -> dict[str, str]:
        env = _child_env(self._java_home)
        env.update(self._environment)
        return env

    def _ready(self, client: httpx.Client, *, check_realm: bool) -> bool:
        """Whether ``/health/ready`` answers and (if asked) the realm's discovery names the issuer."""
        if client.get(f"http://{LOOPBACK}:{self._management_port}/health/ready").status_code != 200:
            return False
        if not check_realm:
            return True
        answer = client.get(f"{self.issuer}/.well-known/openid-configuration")
        return answer.status_code == 200 and answer.json().get("issuer") == self.issuer


def _child_env(java_home: Path) -> dict[str, str]:
    """Our environment minus ``KC_*`` and ``JAVA_OPTS*`` (only our flags configure the server), plus its JDK."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KC_", "KEYCLOAK_", "JAVA_OPTS", "MANDATE_"))
    }
    env["JAVA_HOME"] = str(java_home)
    env["JAVA_OPTS_APPEND"] = JAVA_OPTS_APPEND
    return env


def _tail(path: Path) -> str:
    """The end of a log, without the JVM's ``WARNING:`` noise."""
    return log_tail(path, skip=_LOG_NOISE)
