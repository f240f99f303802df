"""process_raster through the CoreMachine (driven in the test's thread) on a real database and local storage:
temp files always removed, a failed job leaves no outputs, a retried task overwrites."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import jobs.process_raster as job_module
from core.errors import InvalidInput, StorageUnavailable
from core.models import JobStatus
from core.settings import RasterSettings
from services.stac.catalog import get_item
from tests.helpers import rasters
from tests.helpers.driver import Driver

pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")


@pytest.fixture
def scratch(driver: Driver, tmp_path: Path) -> Path:
    """RASTER_TEMP_DIR of the driver's context, to check that nothing is left in it."""
    folder = tmp_path / "scratch"
    driver.ctx.settings.raster = RasterSettings(raster_temp_dir=folder)
    return folder


def _upload(driver: Driver, tmp_path: Path, kind: str = "rgb", blob: str = "in/scene.tif") -> str:
    driver.ctx.storage.upload_file("bronze", blob, rasters.make(kind, tmp_path / "src", 256))
    return blob


def _outputs(driver: Driver) -> list[str]:
    return sorted(b.name for b in driver.ctx.storage.iter_blobs("silver"))


def _error(driver: Driver, job_id: str) -> dict[str, Any]:
    rows = driver.sql("SELECT error_details FROM geoetl.jobs WHERE job_id = %s", (job_id,))
    details: dict[str, Any] = rows[0]["error_details"]  # type: ignore[assignment]
    return details


def test_completed_job_leaves_no_temp_files(driver: Driver, scratch: Path, tmp_path: Path) -> None:
    blob = _upload(driver, tmp_path)
    job_id = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "all"}).job.job_id
    assert driver.run(job_id) is JobStatus.COMPLETED
    assert _outputs(driver) == [
        f"cogs/cogs/in-scene/in-scene_{t}.tif" for t in ("analysis", "archive", "visualization")
    ]
    assert scratch.is_dir() and list(scratch.iterdir()) == []


def test_stac_failure_removes_every_output(
    driver: Driver, scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(db: object, item: object) -> None:
        raise InvalidInput("the catalogue refused the item")

    monkeypatch.setattr(job_module, "upsert_item", refuse)
    blob = _upload(driver, tmp_path)
    job_id = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "both"}).job.job_id
    assert driver.run(job_id) is JobStatus.FAILED
    error = _error(driver, job_id)
    assert error["details"]["stage"] == 3 and "refused" in error["details"]["error"]["message"]
    assert _outputs(driver) == []
    assert list(scratch.iterdir()) == []
    assert get_item(driver.ctx.db, "cogs", "in-scene") is None


def test_a_tier_failing_for_good_removes_its_siblings(
    driver: Driver, scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = job_module.make_cog  # type: ignore[attr-defined]

    def failing_archive(source: Any, destination: Path, plan: Any, **kwargs: Any) -> Any:
        if plan.tier == "archive":
            destination.write_bytes(b"half a file")  # a partial local file: must not survive either
            raise StorageUnavailable("disk went away")
        return real(source, destination, plan, **kwargs)

    monkeypatch.setattr(job_module, "make_cog", failing_archive)
    blob = _upload(driver, tmp_path)
    job_id = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "all"}).job.job_id
    assert driver.run(job_id) is JobStatus.FAILED
    error = _error(driver, job_id)
    assert error["details"]["stage"] == 2 and error["details"]["attempts"] == 4  # retried: a retryable error
    assert _outputs(driver) == []
    assert list(scratch.iterdir()) == []


def test_a_retried_tier_overwrites_its_output(
    driver: Driver, scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_upload = driver.ctx.storage.upload_file
    calls: list[str] = []

    def flaky_upload(container: str, name: str, path: Path, **kwargs: Any) -> Any:
        calls.append(name)
        result = real_upload(container, name, path, **kwargs)
        if calls.count(name) == 1:
            raise StorageUnavailable("connection reset after the upload")  # uploaded, but the task fails
        return result

    blob = _upload(driver, tmp_path, "dem", "in/dem.tif")
    monkeypatch.setattr(driver.ctx.storage, "upload_file", flaky_upload)
    job_id = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "all"}).job.job_id
    assert driver.run(job_id) is JobStatus.COMPLETED
    outputs = _outputs(driver)
    assert outputs == ["cogs/cogs/in-dem/in-dem_analysis.tif", "cogs/cogs/in-dem/in-dem_archive.tif"]
    assert sorted(calls) == sorted(outputs * 2)
    assert list(scratch.iterdir()) == []
    item = get_item(driver.ctx.db, "cogs", "in-dem")
    assert item is not None
    size = driver.ctx.storage.properties("silver", outputs[0]).size
    assert item["assets"]["analysis"]["file:size"] == size


def test_same_parameters_are_the_same_job(driver: Driver, tmp_path: Path) -> None:
    blob = _upload(driver, tmp_path)
    first = driver.machine.submit("process_raster", {"blob_name": blob})
    again = driver.machine.submit("process_raster", {"output_tier": "analysis", "blob_name": blob})
    assert first.job.job_id == again.job.job_id and again.created is False
