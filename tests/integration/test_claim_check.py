"""Task results too large for a row go to blob storage; the row keeps a reference (the claim check)."""

from __future__ import annotations

from core.models import JobStatus
from core.running import CLAIM_CHECK
from services.jobs import job_status
from tests.helpers.driver import Driver


def test_large_results_are_stored_as_blobs_and_read_back_transparently(driver: Driver) -> None:
    driver.machine.claim_check.limit = 40  # every greeting result is larger than this
    job = driver.machine.submit("hello_world", {"n": 3, "message": "a long enough greeting text"}).job
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    rows = driver.sql("SELECT result_data FROM geoetl.tasks WHERE job_id = %s AND stage = 1", (job.job_id,))
    references = [r["result_data"][CLAIM_CHECK] for r in rows]  # type: ignore[index]
    assert all(
        ref["container"] == "silver" and ref["blob_name"].startswith(f"results/{job.job_id}/") for ref in references
    )
    assert driver.ctx.storage.exists("silver", references[0]["blob_name"])
    # planning stage 2 and finalize read the real results through the reference; the job's own result,
    # too large as well here, is a reference to a blob too
    row = driver.ctx.job_store.job(job.job_id)
    assert row is not None and set(row["result_data"]) == {CLAIM_CHECK}
    result = driver.machine.claim_check.load(row["result_data"])
    assert result["first_greeting"] == "a long enough greeting text #0" and result["replies"] == 3


def test_the_status_view_reads_a_large_job_result_back(driver: Driver) -> None:
    driver.machine.claim_check.limit = 40
    job = driver.machine.submit("hello_world", {"n": 2, "message": "another long enough greeting"}).job
    assert driver.run(job.job_id) == JobStatus.COMPLETED
    row = driver.ctx.job_store.job(job.job_id)
    assert row is not None and set(row["result_data"]) == {CLAIM_CHECK}  # stored as a blob
    shown = job_status(driver.ctx, job.job_id).result_data
    assert shown is not None and shown["first_greeting"] == "another long enough greeting #0" and shown["replies"] == 2
