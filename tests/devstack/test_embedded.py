"""The embedded dev stack: real PostgreSQL 18 + pgvector and the real OpenFGA server on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
from openfga_sdk import ClientConfiguration, OpenFgaClient
from openfga_sdk.client.models import ClientCheckRequest, ClientTuple, ClientWriteRequest

import mandate
from mandate.auth._fga_setup import ensure_store_and_model
from mandate.auth.errors import AuthorizationUnavailableError
from mandate.devstack.openfga import EmbeddedOpenFGA, ensure_openfga_binary
from mandate.devstack.postgres import EmbeddedPostgres
from tests.utils.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / ".tools"
MODEL_PATH = Path(mandate.__file__).parent / "auth" / "model.fga"
STORE_NAME = "mandate-test"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("embedded") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def openfga_binary() -> Path:
    return ensure_openfga_binary(TOOLS_DIR)


def _openfga(binary: Path, postgres: EmbeddedPostgres, log_path: Path) -> EmbeddedOpenFGA:
    return EmbeddedOpenFGA(
        binary=binary,
        datastore_uri=postgres.ensure_database("openfga"),
        http_port=free_port(),
        grpc_port=free_port(),
        log_path=log_path,
    )


@pytest.fixture(scope="module")
def openfga(
    openfga_binary: Path, postgres: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedOpenFGA]:
    server = _openfga(openfga_binary, postgres, tmp_path_factory.mktemp("openfga") / "openfga.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def store_and_model(openfga: EmbeddedOpenFGA) -> tuple[str, str]:
    return await ensure_store_and_model(api_url=openfga.api_url, store_name=STORE_NAME, model_path=MODEL_PATH)


@pytest.fixture
async def fga_client(openfga: EmbeddedOpenFGA, store_and_model: tuple[str, str]) -> AsyncIterator[OpenFgaClient]:
    store_id, model_id = store_and_model
    configuration = ClientConfiguration(api_url=openfga.api_url, store_id=store_id, authorization_model_id=model_id)
    async with OpenFgaClient(configuration) as client:
        yield client


# --- EmbeddedPostgres -------------------------------------------------------------------------


def test_embedded_postgres_start_serves_postgres_18_with_pgvector(postgres: EmbeddedPostgres) -> None:
    dsn = postgres.ensure_database("mandate")

    with psycopg.connect(dsn) as conn:
        version = conn.execute("SELECT version()").fetchone()
        extension = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        distance = conn.execute("SELECT '[1,0]'::vector <-> '[0,0]'::vector").fetchone()

    assert version is not None and version[0].startswith("PostgreSQL 18"), version
    assert extension is not None, "pgvector is not installed in the database"
    assert distance == (1.0,)


def test_embedded_postgres_start_twice_returns_same_server(postgres: EmbeddedPostgres) -> None:
    pid = postgres.pid

    dsn = postgres.start()

    assert dsn == postgres.start()
    assert pid is not None and postgres.pid == pid
    assert "host=" in dsn and dsn.startswith("postgresql://postgres:@/postgres?")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT pg_postmaster_start_time() IS NOT NULL").fetchone() == (True,)


def test_embedded_postgres_start_second_handle_reuses_running_server(postgres: EmbeddedPostgres) -> None:
    other = EmbeddedPostgres(postgres.pgdata.parent)

    dsn = other.start()

    assert other.pid == postgres.pid
    assert dsn == postgres.start()


def test_embedded_postgres_ensure_database_twice_is_idempotent(postgres: EmbeddedPostgres) -> None:
    first = postgres.ensure_database("twice")

    second = postgres.ensure_database("twice")

    assert first == second == postgres.dsn("twice")
    with psycopg.connect(postgres.dsn("postgres")) as conn:
        count = conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'twice'").fetchone()
    assert count == (1,)


def test_embedded_postgres_stop_then_start_restarts(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "data")
    dsn = server.start()
    first_pid = server.pid
    try:
        server.stop()
        server.stop()  # a second stop is a no-op
        assert server.pid is None
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=2).close()

        assert server.start() == dsn
        assert server.pid not in (None, first_pid)
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()


# --- EmbeddedOpenFGA --------------------------------------------------------------------------


def test_ensure_openfga_binary_present_returns_without_building(openfga_binary: Path) -> None:
    assert openfga_binary == ensure_openfga_binary(TOOLS_DIR)
    assert openfga_binary.is_file()


def test_embedded_openfga_start_reports_serving(openfga: EmbeddedOpenFGA) -> None:
    response = httpx.get(f"{openfga.api_url}/healthz", timeout=5)

    assert response.status_code == 200
    assert response.json() == {"status": "SERVING"}
    assert openfga.start() == openfga.api_url  # idempotent while running


def test_embedded_openfga_start_listens_on_loopback_only(openfga: EmbeddedOpenFGA) -> None:
    assert openfga.pid is not None
    listening = [
        conn.laddr for conn in psutil.Process(openfga.pid).net_connections(kind="inet") if conn.status == "LISTEN"
    ]

    assert listening, "OpenFGA listens on no socket"
    assert {address.ip for address in listening} == {"127.0.0.1"}
    assert len({address.port for address in listening}) == 2  # the HTTP and gRPC APIs, nothing else


def test_embedded_openfga_stop_ends_process(
    openfga_binary: Path, postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    server = _openfga(openfga_binary, postgres, tmp_path / "openfga.log")
    server.start()
    pid = server.pid
    assert pid is not None

    server.stop()
    server.stop()  # a second stop is a no-op

    assert server.pid is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.api_url}/healthz", timeout=2)
    assert (tmp_path / "openfga.log").stat().st_size > 0


# --- ensure_store_and_model -------------------------------------------------------------------


async def test_ensure_store_and_model_twice_returns_same_ids(
    openfga: EmbeddedOpenFGA, store_and_model: tuple[str, str], fga_client: OpenFgaClient
) -> None:
    again = await ensure_store_and_model(api_url=openfga.api_url, store_name=STORE_NAME, model_path=MODEL_PATH)

    assert again == store_and_model
    models = await fga_client.read_authorization_models()
    assert [model.id for model in models.authorization_models] == [store_and_model[1]]
    stores = await fga_client.list_stores({"name": STORE_NAME})
    assert [store.id for store in stores.stores] == [store_and_model[0]]


async def test_ensure_store_and_model_given_ids_returns_them(
    openfga: EmbeddedOpenFGA, store_and_model: tuple[str, str]
) -> None:
    store_id, model_id = store_and_model

    result = await ensure_store_and_model(
        api_url=openfga.api_url, store_name="ignored", model_path=MODEL_PATH, store_id=store_id, model_id=model_id
    )

    assert result == (store_id, model_id)


async def test_ensure_store_and_model_changed_model_writes_new_model(
    openfga: EmbeddedOpenFGA, tmp_path: Path
) -> None:
    changed = tmp_path / "model.fga"
    changed.write_text(MODEL_PATH.read_text() + "\ntype invoice\n  relations\n    define payer: [user]\n")
    first = await ensure_store_and_model(api_url=openfga.api_url, store_name="mandate-changes", model_path=MODEL_PATH)

    second = await ensure_store_and_model(api_url=openfga.api_url, store_name="mandate-changes", model_path=changed)
    third = await ensure_store_and_model(api_url=openfga.api_url, store_name="mandate-changes", model_path=changed)

    assert second[0] == first[0]
    assert second[1] != first[1]
    assert third == second


async def test_ensure_store_and_model_written_tuple_allowed(fga_client: OpenFgaClient) -> None:
    await fga_client.write(
        ClientWriteRequest(
            writes=[
                ClientTuple(user="user:alice", relation="member", object="tenant:acme"),
                ClientTuple(user="user:alice", relation="viewer", object="document:acme-msa"),
                ClientTuple(user="tenant:acme", relation="tenant", object="document:acme-msa"),
            ]
        )
    )

    allowed = await fga_client.check(
        ClientCheckRequest(user="user:alice", relation="can_read", object="document:acme-msa")
    )

    assert allowed.allowed is True


async def test_ensure_store_and_model_unwritten_tuple_denied(fga_client: OpenFgaClient) -> None:
    denied = await fga_client.check(
        ClientCheckRequest(user="user:dave", relation="can_read", object="document:acme-msa")
    )

    assert denied.allowed is False


async def test_ensure_store_and_model_unreachable_raises_authz_unavailable() -> None:
    api_url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(AuthorizationUnavailableError) as caught:
        await ensure_store_and_model(api_url=api_url, store_name=STORE_NAME, model_path=MODEL_PATH)

    assert caught.value.code == "authz_unavailable"
    assert caught.value.__cause__ is not None


async def test_ensure_store_and_model_unknown_store_raises_authz_unavailable(openfga: EmbeddedOpenFGA) -> None:
    with pytest.raises(AuthorizationUnavailableError) as caught:
        await ensure_store_and_model(
            api_url=openfga.api_url,
            store_name=STORE_NAME,
            model_path=MODEL_PATH,
            store_id="01ARZ3NDEKTSV4RRFFQ69G5FAV",
        )

    assert "01ARZ3NDEKTSV4RRFFQ69G5FAV" in caught.value.message
    assert "{" not in caught.value.message  # no third-party response body
