"""process_raster through the CoreMachine (driven in the test's thread) on a real database and local storage:
temp files always removed (stale ones swept), tiers staged per run and published by the stac stage, a failed or
cancelled run leaves no outputs (the job's clean-up removes its own staging folder only, late tasks remove their
own upload, a late stac task publishes nothing), a retried task overwrites, an item is not taken over by
another source, and a failing job never removes what another job of the same source publishes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import jobs.process_raster as job_module
import services.raster.publish as publish_module
from core.contract import JobEnd
from core.errors import Conflict, DatabaseUnavailable, InvalidInput, StorageUnavailable
from core.models import JobStatus
from core.settings import RasterSettings
from services.raster.paths import claim_blob, output_blob, staged_blob, staging_prefix
from services.stac.catalog import get_item
from services.stac.items import default_item_id
from tests.helpers import rasters
from tests.helpers.driver import Driver


@pytest.fixture
def scratch(driver: Driver, tmp_path: Path) -> Path:
    """RASTER_TEMP_DIR of the driver's context, to check that nothing is left in it."""
    folder = tmp_path / "scratch"
    driver.ctx.settings.raster = RasterSettings(raster_temp_dir=folder)
    return folder


@pytest.fixture
def uploads(driver: Driver, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The blob names uploaded to the output container, in order (the uploads themselves are real)."""
    real = driver.ctx.storage.upload_file
    seen: list[str] = []

    def recording(container: str, name: str, path: Path, **kwargs: Any) -> Any:
        result = real(container, name, path, **kwargs)
        if container == "silver":
            seen.append(name)
        return result

    monkeypatch.setattr(driver.ctx.storage, "upload_file", recording)
    return seen


def _upload(driver: Driver, tmp_path: Path, kind: str = "rgb", blob: str = "in/scene.tif") -> str:
    driver.ctx.storage.upload_file("bronze", blob, rasters.make(kind, tmp_path / "src", 256))
    return blob


def _paths(blob: str, tiers: tuple[str, ...], collection: str = "cogs", item_id: str | None = None) -> list[str]:
    item = item_id or default_item_id(blob)
    return sorted(output_blob(collection, item, tier) for tier in tiers)


def _staged(job_id: str, blob: str, tiers: tuple[str, ...], run: int = 1) -> list[str]:
    item = default_item_id(blob)
    return sorted(staged_blob("cogs", item, tier, job_id, run) for tier in tiers)


def _outputs(driver: Driver) -> list[str]:
    """The COGs in the output container (published and staged)."""
    return sorted(b.name for b in driver.ctx.storage.iter_blobs("silver") if b.name.endswith(".tif"))


def _all_blobs(driver: Driver) -> list[str]:
    return sorted(b.name for b in driver.ctx.storage.iter_blobs("silver"))


def _claims(driver: Driver) -> list[str]:
    return sorted(b.name for b in driver.ctx.storage.iter_blobs("silver") if b.name.endswith("/_source.json"))


def _error(driver: Driver, job_id: str) -> dict[str, Any]:
    rows = driver.sql("SELECT error_details FROM geoetl.jobs WHERE job_id = %s", (job_id,))
    details: dict[str, Any] = rows[0]["error_details"]  # type: ignore[assignment]
    return details


def _cleaned(driver: Driver, job_id: str) -> list[dict[str, Any]]:
    rows = driver.sql(
        "SELECT details FROM geoetl.job_events WHERE job_id = %s AND event = 'job_cleaned_up' ORDER BY event_id",
        (job_id,),
    )
    return [row["details"] for row in rows]  # type: ignore[misc]


def _fail(driver: Driver, job_id: str) -> None:
    """Run the job to its failure, then its clean-up message."""
    assert driver.run(job_id) is JobStatus.FAILED
    driver.step()


ALL = ("analysis", "archive", "visualization")


def test_completed_job_leaves_no_temp_files(driver: Driver, scratch: Path, tmp_path: Path) -> None:
    blob = _upload(driver, tmp_path)
    job_id = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "all"}).job.job_id
    assert driver.run(job_id) is JobStatus.COMPLETED
    assert _outputs(driver) == _paths(blob, ALL)  # published; the staging folder is gone
    assert not any("/_runs/" in name for name in _all_blobs(driver))
    assert scratch.is_dir() and list(scratch.iterdir()) == []
    driver.step()
    assert _cleaned(driver, job_id) == []  # a completed job is not cleaned up


def test_stale_temp_folders_of_killed_workers_are_swept(driver: Driver, scratch: Path, tmp_path: Path) -> None:
    stale, recent = scratch / "raster-task-killed-abc", scratch / "raster-task-running-def"
    for folder in (stale, recent):
        folder.mkdir(parents=True)
        (folder / "half.tif").write_bytes(b"partial")
    past = time.time() - 7 * 3600  # older than RASTER_TEMP_MAX_AGE_HOURS (6)
    os.utime(stale, (past, past))
    blob = _upload(driver, tmp_path)
    job_id = driver.machine.submit("process_raster", {"blob_name": blob}).job.job_id
    assert driver.run(job_id) is JobStatus.COMPLETED
    assert sorted(p.name for p in scratch.iterdir()) == [recent.name]


def test_stac_failure_removes_every_output(
    driver: Driver, scratch: Path, tmp_path: Path, uploads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(db: object, item: object, **kwargs: object) -> None:
        raise InvalidInput("the catalogue refused the item")

    monkeypatch.setattr(publish_module, "upsert_item", refuse)
    blob = _upload(driver, tmp_path)
    job_id = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "both"}).job.job_id
    assert driver.run(job_id) is JobStatus.FAILED
    staged = _staged(job_id, blob, ("analysis", "visualization"))
    assert sorted(uploads) == staged  # tiers are uploaded to the run's staging folder only
    assert _outputs(driver) == []  # the stac task took back its final copies and the staging folder
    driver.step()
    error = _error(driver, job_id)
    assert error["details"]["stage"] == 3 and "refused" in error["details"]["error"]["message"]
    assert _all_blobs(driver) == []
    claim = claim_blob("cogs", default_item_id(blob))
    assert _cleaned(driver, job_id) == [{"container": "silver", "removed": [claim]}]
    assert list(scratch.iterdir()) == []
    assert get_item(driver.ctx.db, "cogs", default_item_id(blob)) is None


def test_a_tier_failing_for_good_removes_its_siblings(
    driver: Driver, scratch: Path, tmp_path: Path, uploads: list[str], monkeypatch: pytest.MonkeyPatch
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
    assert _outputs(driver) == _staged(job_id, blob, ("analysis", "visualization"))  # the siblings were staged
    driver.step()
    error = _error(driver, job_id)
    assert error["details"]["stage"] == 2 and error["details"]["attempts"] == 4  # retried: a retryable error
    assert _all_blobs(driver) == []  # staging folder and claim removed
    assert list(scratch.iterdir()) == []


def test_a_tier_uploaded_by_an_earlier_attempt_is_removed_when_a_later_one_fails_for_good(
    driver: Driver, scratch: Path, tmp_path: Path, uploads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempt 1 uploads, then fails (retryable); attempt 2 fails permanently before uploading."""
    real_publish = job_module._publish
    real_convert = job_module._convert
    attempts: list[int] = []

    def publish_then_fail(context: Any, container: str, blob: str, local: Path) -> None:
        real_publish(context, container, blob, local)
        raise StorageUnavailable("the connection broke after the upload")

    def convert(params: Any, plan: Any, context: Any, local: Path) -> Any:
        attempts.append(context.attempt)
        if context.attempt > 1:
            raise InvalidInput("the source changed meanwhile and is no longer a raster")
        return real_convert(params, plan, context, local)

    monkeypatch.setattr(job_module, "_publish", publish_then_fail)
    monkeypatch.setattr(job_module, "_convert", convert)
    blob = _upload(driver, tmp_path)
    job_id = driver.machine.submit("process_raster", {"blob_name": blob}).job.job_id
    assert driver.run(job_id) is JobStatus.FAILED
    assert attempts == [1, 2]
    assert uploads == _staged(job_id, blob, ("analysis",)) and _outputs(driver) == uploads  # left by attempt 1
    driver.step()
    assert _outputs(driver) == []


def test_a_late_tier_finishing_after_the_job_ended_removes_its_own_upload(
    driver: Driver, scratch: Path, tmp_path: Path, uploads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job is cancelled (its clean-up already sent) while a tier task uploads: the task takes it back."""
    real_upload = driver.ctx.storage.upload_file
    job_ids: list[str] = []

    def upload_then_cancel(container: str, name: str, path: Path, **kwargs: Any) -> Any:
        result = real_upload(container, name, path, **kwargs)  # (the recording fixture's wrapper)
        driver.machine.cancel(job_ids[0])  # meanwhile, elsewhere
        return result

    blob = _upload(driver, tmp_path)
    job_id = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "analysis"}).job.job_id
    job_ids.append(job_id)
    monkeypatch.setattr(driver.ctx.storage, "upload_file", upload_then_cancel)
    assert driver.run(job_id) is JobStatus.CANCELLED
    assert uploads == _staged(job_id, blob, ("analysis",))  # it was uploaded ...
    assert _outputs(driver) == []  # ... and removed by the task itself, before any clean-up ran
    driver.step()
    claim = claim_blob("cogs", default_item_id(blob))
    assert _cleaned(driver, job_id) == [{"container": "silver", "removed": [claim]}]


def test_clean_up_removes_its_whole_staging_folder_and_keeps_published_outputs(
    driver: Driver, scratch: Path, tmp_path: Path
) -> None:
    blob = _upload(driver, tmp_path)
    first = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "analysis"}).job.job_id
    assert driver.run(first) is JobStatus.COMPLETED
    [published] = _outputs(driver)
    # a second run of the same source for more tiers: its staging folder holds what killed or late workers left
    # (a tier, and a file whose name no tier has); the run then fails (its source is replaced by a text file)
    second = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "all"}).job.job_id
    folder = staging_prefix("cogs", default_item_id(blob), second, 1)
    left = sorted([*_staged(second, blob, ("archive",)), f"{folder}leftover.part"])
    for name in left:
        driver.ctx.storage.write_bytes("silver", name, b"half a COG")
    other_run = _staged(second, blob, ("archive",), run=2)[0]  # not this run's: kept
    driver.ctx.storage.write_bytes("silver", other_run, b"another run")
    driver.ctx.storage.write_bytes("silver", _paths(blob, ("archive",))[0], b"a final path")
    driver.ctx.storage.upload_file("bronze", blob, rasters.not_a_raster(tmp_path / "text.tif"))
    _fail(driver, second)
    assert _cleaned(driver, second) == [{"container": "silver", "removed": left}]
    assert _outputs(driver) == sorted([published, _paths(blob, ("archive",))[0], other_run])
    resources = {"storage": lambda: driver.ctx.storage, "db": lambda: driver.ctx.db, "settings": lambda: None}
    params = job_module.ProcessRasterParameters(blob_name=blob, output_tier="all")
    again = job_module.ProcessRaster().cleanup(params, JobEnd(second, 1, "failed", None, resources))  # idempotent
    assert again == {"container": "silver", "removed": []}
    assert _outputs(driver) == sorted([published, _paths(blob, ("archive",))[0], other_run])


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

    blob = _upload(driver, tmp_path, "dem", "dem.tif")
    monkeypatch.setattr(driver.ctx.storage, "upload_file", flaky_upload)
    job_id = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "all"}).job.job_id
    assert driver.run(job_id) is JobStatus.COMPLETED
    outputs = _outputs(driver)
    assert outputs == ["cogs/cogs/dem/dem_analysis.tif", "cogs/cogs/dem/dem_archive.tif"]
    assert sorted(calls) == sorted(_staged(job_id, blob, ("analysis", "archive")) * 2)
    assert list(scratch.iterdir()) == []
    item = get_item(driver.ctx.db, "cogs", "dem")
    assert item is not None
    size = driver.ctx.storage.properties("silver", outputs[0]).size
    assert item["assets"]["analysis"]["file:size"] == size


def test_an_item_of_another_source_is_not_taken_over(driver: Driver, scratch: Path, tmp_path: Path) -> None:
    a = _upload(driver, tmp_path, "rgb", "a/b.tif")
    b = _upload(driver, tmp_path, "dem", "a-b.tif")
    assert default_item_id(a) != default_item_id(b)  # the default ids no longer collide
    first = driver.machine.submit("process_raster", {"blob_name": a, "item_id": "shared"}).job.job_id
    # submitted before the first is catalogued: only the validate stage can see the conflict
    second = driver.machine.submit("process_raster", {"blob_name": b, "item_id": "shared"}).job.job_id
    assert driver.run(first) is JobStatus.COMPLETED
    published = _outputs(driver)
    _fail(driver, second)
    error = _error(driver, second)["details"]
    assert error["stage"] == 1 and error["attempts"] == 1 and error["error"]["code"] == "conflict"
    assert "STAC item cogs/shared belongs to another source" in error["error"]["message"]
    assert _outputs(driver) == published  # the clean-up kept the other source's files
    item = get_item(driver.ctx.db, "cogs", "shared")
    assert item is not None and item["assets"]["analysis"]["raster:bands"][0]["data_type"] == "uint8"
    with pytest.raises(Conflict, match="already exists and was made from another source"):  # at submit: 409
        driver.machine.submit("process_raster", {"blob_name": b, "item_id": "shared", "output_tier": "all"})


def test_rasters_over_the_size_budget_are_refused_in_validation(driver: Driver, scratch: Path, tmp_path: Path) -> None:
    driver.ctx.settings.raster = RasterSettings(raster_temp_dir=scratch, raster_max_source_bytes=100_000)
    blob = _upload(driver, tmp_path)  # 256 x 256 x 3 bytes = 196,608
    job_id = driver.machine.submit("process_raster", {"blob_name": blob}).job.job_id
    _fail(driver, job_id)
    error = _error(driver, job_id)["details"]
    assert error["attempts"] == 1 and "RASTER_MAX_SOURCE_BYTES" in error["error"]["message"]
    assert _outputs(driver) == []


def test_small_rasters_are_converted_in_memory_larger_ones_through_a_file(
    driver: Driver, scratch: Path, tmp_path: Path
) -> None:
    blob = _upload(driver, tmp_path)
    for in_memory_mb, expected in ((64, True), (0, False)):
        driver.ctx.settings.raster = RasterSettings(raster_temp_dir=scratch, raster_in_memory_max_mb=in_memory_mb)
        job = driver.machine.submit("process_raster", {"blob_name": blob, "collection_id": f"mem{in_memory_mb}"})
        assert driver.run(job.job.job_id) is JobStatus.COMPLETED
        rows = driver.sql("SELECT parameters FROM geoetl.tasks WHERE job_id = %s AND stage = 2", (job.job.job_id,))
        assert [row["parameters"]["in_memory"] for row in rows] == [expected]  # type: ignore[index]


def test_same_parameters_are_the_same_job(driver: Driver, tmp_path: Path) -> None:
    blob = _upload(driver, tmp_path)
    first = driver.machine.submit("process_raster", {"blob_name": blob})
    again = driver.machine.submit("process_raster", {"output_tier": "analysis", "blob_name": blob})
    assert first.job.job_id == again.job.job_id and again.created is False


def test_a_failed_jobs_clean_up_leaves_a_running_job_of_the_same_source_alone(
    driver: Driver, scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Job A fails; its clean-up runs while job B (same source and item, other settings) is between its cog and
    stac stages: B's staged tiers survive, B publishes an item whose files exist."""
    blob = _upload(driver, tmp_path)
    real_convert = job_module._convert
    failing: set[str] = set()

    def convert(params: Any, plan: Any, context: Any, local: Path) -> Any:
        written = real_convert(params, plan, context, local)
        if context.job_id in failing and plan.tier == "archive":
            raise InvalidInput("the archive tier of job A is refused")
        return written

    monkeypatch.setattr(job_module, "_convert", convert)
    a = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "all"}).job.job_id
    failing.add(a)
    assert driver.run(a) is JobStatus.FAILED
    held = driver.receive(driver.machine.jobs_queue)  # A's clean-up message: handled later, by hand
    assert len(held) == 1
    a_staged = _staged(a, blob, ("analysis", "visualization"))
    assert set(a_staged) <= set(_outputs(driver))  # A's siblings were staged

    real_upsert = publish_module.upsert_item
    cleaned: list[str] = []

    def clean_up_a_then_upsert(db: Any, item: Any, **kwargs: Any) -> None:
        for message in held:  # A's clean-up, now: B's tiers are staged, not yet published
            cleaned.append(driver.machine.handle_job_message(message.body, message.message_id, 1))
            driver.queue.complete(driver.machine.jobs_queue, message)
        real_upsert(db, item, **kwargs)

    monkeypatch.setattr(publish_module, "upsert_item", clean_up_a_then_upsert)
    b = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "both"}).job.job_id
    assert driver.run(b) is JobStatus.COMPLETED
    claim = claim_blob("cogs", default_item_id(blob))
    # A's clean-up released the claim (no item yet), and B claimed the item again when it published
    assert cleaned and _cleaned(driver, a) == [{"container": "silver", "removed": [*a_staged, claim]}]
    item = get_item(driver.ctx.db, "cogs", default_item_id(blob))
    assert item is not None and sorted(item["assets"]) == ["analysis", "visualization"]
    assert _all_blobs(driver) == sorted([*_paths(blob, ("analysis", "visualization")), claim])
    for tier, asset in item["assets"].items():
        final = _paths(blob, (tier,))[0]
        assert asset["href"] == driver.ctx.storage.url("silver", final)
        assert driver.ctx.storage.properties("silver", final).size == asset["file:size"]


def test_a_cancelled_jobs_late_stac_task_publishes_nothing(
    driver: Driver, scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job is cancelled (and cleaned up) after the stac task's heartbeat and copies, just before its upsert:
    the guarded upsert refuses, the task takes back its final copies and nothing is catalogued."""
    blob = _upload(driver, tmp_path)
    real_upsert = publish_module.upsert_item
    job_ids: list[str] = []
    seen: list[list[str]] = []

    def cancel_then_upsert(db: Any, item: Any, **kwargs: Any) -> None:
        seen.append(_outputs(driver))
        driver.machine.cancel(job_ids[0])
        assert driver.machine.cleanup(job_ids[0], 1) == "cleaned"  # ran before the task publishes
        real_upsert(db, item, **kwargs)

    monkeypatch.setattr(publish_module, "upsert_item", cancel_then_upsert)
    job_id = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "both"}).job.job_id
    job_ids.append(job_id)
    assert driver.run(job_id) is JobStatus.CANCELLED
    driver.step()
    finals = _paths(blob, ("analysis", "visualization"))
    assert seen == [sorted([*finals, *_staged(job_id, blob, ("analysis", "visualization"))])]  # copied, staged
    assert get_item(driver.ctx.db, "cogs", default_item_id(blob)) is None
    assert _all_blobs(driver) == []  # final copies taken back, staging folder and claim removed
    assert list(scratch.iterdir()) == []


def test_a_stac_task_retried_after_publishing_finds_its_tiers_published(
    driver: Driver, scratch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempt 1 copied, upserted and removed the staging folder, then its completion was lost (a retryable
    error): attempt 2 finds the staged tiers gone and the final blobs in place, and publishes again."""
    blob = _upload(driver, tmp_path)
    real_upsert = publish_module.upsert_item
    calls: list[int] = []

    def upsert_then_lose_the_answer(db: Any, item: Any, **kwargs: Any) -> None:
        real_upsert(db, item, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            publish_module.remove_staging(
                driver.ctx.storage, "silver", staging_prefix("cogs", item["id"], job_ids[0], 1)
            )
            raise DatabaseUnavailable("the connection dropped before the answer came back")

    job_ids: list[str] = []
    monkeypatch.setattr(publish_module, "upsert_item", upsert_then_lose_the_answer)
    job_id = driver.machine.submit("process_raster", {"blob_name": blob, "output_tier": "both"}).job.job_id
    job_ids.append(job_id)
    assert driver.run(job_id) is JobStatus.COMPLETED
    assert len(calls) == 2
    assert _outputs(driver) == _paths(blob, ("analysis", "visualization"))
    assert get_item(driver.ctx.db, "cogs", default_item_id(blob)) is not None
