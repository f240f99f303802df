"""Ids and blob names of ``process_raster``: final COG paths, per-run staging folders, the item's claim blob."""

from __future__ import annotations

import re

from core.models import parse_task_id

#: ids end up in blob paths and URLs: a conservative subset of what STAC allows
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_id(value: str, what: str) -> str:
    """``value`` when it is a valid collection or item id, else ValueError (for a pydantic validator)."""
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(
            f"invalid {what} {value!r}: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def output_blob(collection_id: str, item_id: str, tier: str) -> str:
    """The deterministic blob name of a tier's COG in the output container."""
    return f"cogs/{collection_id}/{item_id}/{item_id}_{tier}.tif"


def staging_prefix(collection_id: str, item_id: str, job_id: str, run: int) -> str:
    """The folder (blob name prefix, ending in '/') where one run of one job stages its tiers before publishing."""
    return f"cogs/{collection_id}/{item_id}/_runs/{job_id[:16]}-r{run}/"


def staged_blob(collection_id: str, item_id: str, tier: str, job_id: str, run: int) -> str:
    """Where a tier's COG is uploaded by the cog stage of that run (copied to ``output_blob`` by the stac stage)."""
    return f"{staging_prefix(collection_id, item_id, job_id, run)}{item_id}_{tier}.tif"


def claim_blob(collection_id: str, item_id: str) -> str:
    """The blob that records which source an item's folder belongs to (written once, by the first job)."""
    return f"cogs/{collection_id}/{item_id}/_source.json"


def run_of(task_id: str) -> tuple[str, int]:
    """The job id and run number a task id belongs to."""
    parsed = parse_task_id(task_id)
    if parsed is None:
        raise ValueError(f"not a task id: {task_id!r}")
    return parsed
