"""Bad files versus storage failures, read through GDAL's /vsiaz/ for real: a file that is broken is bad input
(permanent), a storage service that is down, throttles, refuses credentials or drops the connection is
``StorageUnavailable`` (retried). The blob service is Azurite, or a small HTTP server standing in for it when a
failure must be produced on purpose."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.errors import InvalidInput, StorageUnavailable
from infrastructure.storage.azure import AzureBlobStore
from infrastructure.storage.base import GdalPath
from services.raster.cog import make_cog
from services.raster.inspect import inspect_raster
from services.stac.items import build_raster_item
from tests.helpers import rasters

ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: no retries inside GDAL (its retries wait 30 s and more): the first failure is what the test sees
NO_RETRY = {"GDAL_HTTP_MAX_RETRY": "0", "CPL_VSIL_CURL_NON_CACHED": "/vsiaz/"}


def connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )


class FakeBlobService:
    """Serves one file's bytes for any blob (HEAD and ranged GET), or fails on purpose."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.status: int | None = None  # every request answers this status
        self.fail_between: tuple[int, int] | None = None  # ranged reads starting in this span answer 503
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
                start = int(match.group(1)) if match else 0
                span = service.fail_between
                failing = span is not None and match is not None and span[0] <= start < span[1]
                if service.status is not None or failing:
                    self.send_response(service.status or 503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = service.data
                end = min(int(match.group(2)) if match and match.group(2) else len(data) - 1, len(data) - 1)
                chunk = data[start : end + 1]
                self.send_response(206 if match else 200)
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("Accept-Ranges", "bytes")
                if match:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                if body:
                    self.wfile.write(chunk)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def gdal_path(self) -> GdalPath:
        port = self.server.server_address[1]
        return GdalPath(
            "/vsiaz/bronze/scene.tif", {"AZURE_STORAGE_CONNECTION_STRING": connection_string(port), **NO_RETRY}
        )


@pytest.fixture
def fake_service(tmp_path: Path) -> Iterator[FakeBlobService]:
    source = rasters.multiband_int16(tmp_path / "ok.tif", 512)
    service = FakeBlobService(source.read_bytes())
    thread = threading.Thread(target=service.server.serve_forever, daemon=True)
    thread.start()
    yield service
    service.server.shutdown()
    service.server.server_close()


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_storage_endpoint_is_retryable_not_bad_input(tmp_path: Path) -> None:
    down = AzureBlobStore.from_connection_string(connection_string(dead_port()), retry_total=0)
    path = down.gdal_path("bronze", "scene.tif")  # with GDAL's own retries, as in the app

    def probe() -> object:
        return down.properties("bronze", "scene.tif")

    # GDAL then only says the file "does not exist": the storage service's own answer (none) decides
    with pytest.raises(StorageUnavailable, match="could not be read from storage") as caught:
        inspect_raster(path, probe=probe)
    assert caught.value.retryable
    plan = inspect_raster(str(rasters.rgb_uint8(tmp_path / "rgb.tif", 64))).tiers["analysis"]
    with pytest.raises(StorageUnavailable):
        make_cog(path, tmp_path / "out.tif", plan, raster_type="rgb", probe=probe)
    assert not (tmp_path / "out.tif").exists()
    # without retries GDAL reports curl's error itself
    with pytest.raises(StorageUnavailable, match="CURL error"):
        inspect_raster(GdalPath(path.path, {**path.config, **NO_RETRY}))


@pytest.mark.parametrize("status", [500, 503, 429, 403, 401])
def test_storage_errors_and_refused_credentials_are_retryable(fake_service: FakeBlobService, status: int) -> None:
    fake_service.status = status
    with pytest.raises(StorageUnavailable, match=f"HTTP response code: {status}"):
        inspect_raster(fake_service.gdal_path())


def test_a_missing_blob_is_bad_input(fake_service: FakeBlobService) -> None:
    fake_service.status = 404
    with pytest.raises(InvalidInput):
        inspect_raster(fake_service.gdal_path())


def test_a_connection_failing_mid_conversion_is_retryable(fake_service: FakeBlobService, tmp_path: Path) -> None:
    path = fake_service.gdal_path()
    facts = inspect_raster(path)  # header, first and last blocks are served
    size = len(fake_service.data)
    fake_service.fail_between = (size // 3, 2 * size // 3)  # then the service fails reads of middle blocks
    with pytest.raises(StorageUnavailable, match="could not be read from storage"):
        make_cog(path, tmp_path / "out.tif", facts.tiers["analysis"], raster_type=facts.raster_type)


def test_a_corrupt_tile_in_the_middle_is_bad_input(tmp_path: Path) -> None:
    source = str(rasters.corrupt_middle_tile(tmp_path / "corrupt.tif"))
    facts = inspect_raster(source)  # the first and last blocks are intact: validation cannot see it
    with pytest.raises(InvalidInput, match=r"the source is corrupt .*analysis.*IReadBlock failed") as caught:
        make_cog(source, tmp_path / "out.tif", facts.tiers["analysis"], raster_type=facts.raster_type)
    assert not caught.value.retryable


def test_on_azurite_the_storage_service_decides_between_a_bad_file_and_an_outage(
    azurite_connection_string: str, tmp_path: Path
) -> None:
    store = AzureBlobStore.from_connection_string(azurite_connection_string)
    down = AzureBlobStore.from_connection_string(connection_string(dead_port()), retry_total=0)
    store.ensure_container("bronze")
    store.upload_file("bronze", "errors/text.tif", rasters.not_a_raster(tmp_path / "text.tif"))
    store.upload_file("bronze", "errors/corrupt.tif", rasters.corrupt_middle_tile(tmp_path / "corrupt.tif"))
    text = store.gdal_path("bronze", "errors/text.tif")
    with pytest.raises(InvalidInput, match="cannot be opened as a raster"):
        inspect_raster(text, probe=lambda: store.properties("bronze", "errors/text.tif"))
    # GDAL's message alone does not say whether the bytes or the service were at fault; the probe does
    with pytest.raises(StorageUnavailable):
        inspect_raster(text, probe=lambda: down.properties("bronze", "errors/text.tif"))
    corrupt = store.gdal_path("bronze", "errors/corrupt.tif")
    facts = inspect_raster(corrupt, probe=lambda: store.properties("bronze", "errors/corrupt.tif"))
    with pytest.raises(InvalidInput, match="the source is corrupt"):
        make_cog(
            corrupt,
            tmp_path / "out.tif",
            facts.tiers["archive"],
            raster_type=facts.raster_type,
            probe=lambda: store.properties("bronze", "errors/corrupt.tif"),
        )


@pytest.mark.parametrize(
    ("status", "error"), [(503, StorageUnavailable), (429, StorageUnavailable), (404, InvalidInput)]
)
def test_stac_items_tell_an_outage_from_a_bad_file(
    fake_service: FakeBlobService, status: int, error: type[Exception]
) -> None:
    fake_service.status = status
    with pytest.raises(error):
        build_raster_item(fake_service.gdal_path(), item_id="scene", collection_id="cogs")
