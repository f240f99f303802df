"""Azure backend only: construction from settings, bounded failures, no secrets in errors (real Azurite)."""

from __future__ import annotations

import base64
import http.server
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

from core.errors import InvalidBlobName, InvalidSetting, StorageUnavailable
from core.settings import StorageSettings
from devstack.azurite import ACCOUNT_KEY, ACCOUNT_NAME, free_port
from devstack.azurite import connection_string as azurite_connection_string_for
from infrastructure.storage import (
    AzureBlobStore,
    BlobStore,
    LocalBlobStore,
    create_blob_store,
)
from infrastructure.storage.azure import redact


def _new_container() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


# -- Azure: bounded failures, no secrets in errors ----------------------------------------------

WRONG_KEY = base64.b64encode(b"not the key of devstoreaccount1, the same length" + bytes(16)).decode()


def _assert_quotes_no_secret(error: BaseException, *secrets: str) -> None:
    """Neither the message, the details nor the logged traceback (with its causes) of ``error`` quote a secret."""
    assert isinstance(error, StorageUnavailable | InvalidSetting), error
    texts = [str(error), error.message, repr(error.details), "".join(traceback.format_exception(error))]
    for text in texts:
        for secret in (*secrets, "sig=", "AccountKey="):
            assert secret not in text, f"{secret!r} in {text!r}"


def _sas_connection_string(endpoint: str, key: str = ACCOUNT_KEY) -> tuple[str, str]:
    """A SAS connection string for the Azurite account at ``endpoint`` (signed with ``key``) and its signature."""
    sas = generate_account_sas(
        ACCOUNT_NAME,
        key,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, list=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    signature = sas.split("sig=", 1)[1]
    return f"BlobEndpoint={endpoint};SharedAccessSignature={sas}", signature


def _failing_calls(store: BlobStore) -> list[Callable[[], object]]:
    return [
        lambda: store.ensure_container("box"),
        lambda: store.container_exists("box"),
        lambda: store.list_blobs("box"),
        lambda: store.read_bytes("box", "a.txt"),
        lambda: store.write_bytes("box", "a.txt", b"x"),
        lambda: store.properties("box", "a.txt"),
        lambda: store.exists("box", "a.txt"),
    ]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # the kernel completes the connections; nothing ever reads them
        yield server.getsockname()[1]


@pytest.mark.timeout(30)  # the SDK's defaults (3 retries after 15 s and more, 60 s reads) would hang past this
@pytest.mark.parametrize("endpoint", ["refused", "silent"])
def test_create_blob_store_bounds_retries_and_timeouts(request: pytest.FixtureRequest, endpoint: str) -> None:
    port = free_port() if endpoint == "refused" else request.getfixturevalue("silent_port")
    settings = StorageSettings(
        storage_backend="azure",
        azure_storage_connection_string=azurite_connection_string_for(port),
        azure_storage_max_retries=0,
        azure_storage_timeout_seconds=0.5,
    )
    with create_blob_store(settings) as store:
        for call in _failing_calls(store):
            with pytest.raises(StorageUnavailable, match="unavailable") as info:
                call()
            assert info.value.retryable
            _assert_quotes_no_secret(info.value, ACCOUNT_KEY)


def test_refused_credentials_quote_no_secret(azurite_connection_string: str) -> None:
    """Azurite checks signatures: a wrong account key or a SAS signed with one is refused."""
    assert ACCOUNT_KEY in azurite_connection_string
    endpoint = azurite_connection_string.split("BlobEndpoint=", 1)[1].split(";", 1)[0]
    sas_connection_string, signature = _sas_connection_string(endpoint, WRONG_KEY)
    for connection_string in (azurite_connection_string.replace(ACCOUNT_KEY, WRONG_KEY), sas_connection_string):
        with AzureBlobStore.from_connection_string(connection_string, retry_total=0) as store:
            for call in _failing_calls(store):
                with pytest.raises(StorageUnavailable, match="refused the credentials") as info:
                    call()
                _assert_quotes_no_secret(info.value, WRONG_KEY, ACCOUNT_KEY, signature)


class _QuotingGateway(http.server.BaseHTTPRequestHandler):
    """Answers every request 503 with a body quoting the request line, query string included, as proxies may."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = f"upstream unavailable for {self.command} {self.path}".encode()
        self.send_response(503)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def quoting_gateway() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _QuotingGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_sas_signatures_are_redacted_from_errors(quoting_gateway: int) -> None:
    connection_string, signature = _sas_connection_string(f"http://127.0.0.1:{quoting_gateway}/{ACCOUNT_NAME}")
    with AzureBlobStore.from_connection_string(connection_string, retry_total=0) as store:
        assert signature not in repr(store) and "sig=" not in repr(store)
        for call in _failing_calls(store):
            with pytest.raises(StorageUnavailable) as info:
                call()
            _assert_quotes_no_secret(info.value, signature)
        with pytest.raises(StorageUnavailable, match=r"upstream unavailable for GET /devstoreaccount1/box/a\.txt"):
            store.read_bytes("box", "a.txt")  # the rest of what the gateway said is kept


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("url: /acct/c/b?sv=2024-01-01&se=2030&sig=abc%2Bdef%3D&sp=r (Caused by X)", "abc%2Bdef"),
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0/+==;EndpointSuffix=x", "c2VjcmV0"),
        ("BlobEndpoint=https://a;SharedAccessSignature=sv=2024&ss=b&sig=XYZ123", "XYZ123"),
        ("{'Authorization': 'Bearer eyJ0eXAi.eyJhdWQi.sIgNaTuRe'}", "eyJ0eXAi"),
        ("The MAC signature found in the HTTP request 'kQ7b/Zz0=' is not the same", "kQ7b"),
    ],
)
def test_redact(text: str, secret: str) -> None:
    redacted = redact(text)
    assert secret not in redacted and "redacted" in redacted
    assert "sig=" not in redacted and "AccountKey=" not in redacted
    assert (
        redact("no secrets here: container 'box', blob 'a/sig.txt'")
        == "no secrets here: container 'box', blob 'a/sig.txt'"
    )


# -- construction -------------------------------------------------------------------------------


def test_create_blob_store_from_settings(tmp_path: Path, azurite_connection_string: str) -> None:
    local = create_blob_store(StorageSettings(storage_backend="local", storage_local_root=tmp_path / "root"))
    assert isinstance(local, LocalBlobStore) and local.root == (tmp_path / "root").resolve()
    settings = StorageSettings(storage_backend="azure", azure_storage_connection_string=azurite_connection_string)
    with create_blob_store(settings) as azure:
        assert isinstance(azure, AzureBlobStore) and azure.backend == "azure"
        name = _new_container()
        azure.ensure_container(name)
        assert azure.write_bytes(name, "hello.txt", b"hi").size == 2
    with pytest.raises(InvalidSetting, match="AZURE_STORAGE_CONNECTION_STRING"):
        create_blob_store(StorageSettings(storage_backend="azure"))
    with pytest.raises(InvalidSetting, match="connection string"):
        create_blob_store(StorageSettings(storage_backend="azure", azure_storage_connection_string="nonsense"))


class _FixedToken:
    """A stand-in credential: it hands out a fixed token (no storage is involved)."""

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken("token-123", int(time.time()) + 3600)


def test_identity_gdal_config() -> None:
    credential = _FixedToken()
    public = AzureBlobStore.from_account("myaccount", credential=credential)  # type: ignore[arg-type]
    gdal = public.gdal_path("silver", "cogs/a.tif")
    assert gdal.path == "/vsiaz/silver/cogs/a.tif"
    assert dict(gdal.config) == {
        "AZURE_STORAGE_ACCOUNT": "myaccount",
        "AZURE_STORAGE_ACCESS_TOKEN": "token-123",
        "CPL_VSIL_CURL_NON_CACHED": "/vsiaz/silver/",
    }
    assert credential.scopes == ["https://storage.azure.com/.default"]
    private = AzureBlobStore.from_account(
        account_url="https://acct.privatelink.blob.core.windows.net/",
        credential=credential,  # type: ignore[arg-type]
    )
    config = private.gdal_path("silver", "a.tif").config
    assert config["AZURE_STORAGE_ACCOUNT"] == "acct"
    assert config["CPL_AZURE_ENDPOINT"] == "https://acct.privatelink.blob.core.windows.net"


def test_blobs_that_azure_allows_but_we_never_write_can_be_listed_and_read(azurite_connection_string: str) -> None:
    from azure.storage.blob import BlobServiceClient

    name = (
        "\u0646\u0627\u0645\u0647\u200c\u0647\u0627/" + "\u4e2d" * 86 + ".txt"
    )  # Persian with ZWNJ; a 258-byte segment
    container = _new_container()
    with AzureBlobStore.from_connection_string(azurite_connection_string) as store:
        store.ensure_container(container)
        with BlobServiceClient.from_connection_string(azurite_connection_string) as raw:
            raw.get_blob_client(container, name).upload_blob(b"written elsewhere")
        listed = [blob.name for blob in store.iter_blobs(container)]
        assert listed == [name]
        assert store.read_bytes(container, name) == b"written elsewhere"
        assert store.properties(container, name).size == len(b"written elsewhere")
        with pytest.raises(InvalidBlobName):
            store.write_bytes(container, name, b"not portable")
        assert store.delete(container, name)
