"""Opening zipped inputs (services/vector/formats.py): limits read from the zip's directory, and shapefiles named
by their path in the zip. Files generated here, read through GDAL; no database."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from core.errors import InvalidInput
from services.vector.formats import ZipLimits, iter_batches, open_source
from tests.helpers import vectors


def test_zip_limits_are_checked_before_anything_is_decompressed(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.dbf", b"\0" * 2_000_000)  # deflates ~1000 times
    with pytest.raises(InvalidInput, match=r"'zeros.dbf' expands \d+ times \(more than 100\)"):
        open_source(bomb, "shapefile_zip", zip_limits=ZipLimits(max_ratio=100))
    with pytest.raises(InvalidInput, match="holds 2000000 bytes uncompressed, more than the 1000000 allowed"):
        open_source(bomb, "shapefile_zip", zip_limits=ZipLimits(max_bytes=1_000_000))
    many = tmp_path / "many.zip"
    many.write_bytes(vectors.zip_bytes({f"f{i}.txt": b"x" for i in range(6)}))
    with pytest.raises(InvalidInput, match="holds 6 members, more than the 5 allowed"):
        open_source(many, "kmz", zip_limits=ZipLimits(max_members=5))


def test_shapefiles_of_the_same_name_in_two_folders_are_told_apart(tmp_path: Path) -> None:
    path = vectors.shapefiles_zip(
        tmp_path / "two.zip",
        {"a/roads": vectors.points_frame(2), "b/roads": vectors.points_frame(3), "c/rivers": vectors.points_frame(4)},
    )
    with pytest.raises(InvalidInput, match="3 shapefiles; pass layer_name, one of: a/roads, b/roads, rivers"):
        open_source(path, "shapefile_zip")
    with pytest.raises(InvalidInput, match="layer 'roads' is ambiguous in the zip"):
        open_source(path, "shapefile_zip", layer_name="roads")
    counts = {
        name: sum(len(b.wkb) for b in iter_batches(open_source(path, "shapefile_zip", layer_name=name), 100))
        for name in ("a/roads", "b/roads.shp", "rivers", "c/rivers")
    }
    assert counts == {"a/roads": 2, "b/roads.shp": 3, "rivers": 4, "c/rivers": 4}


def test_a_corrupt_member_is_invalid_input_when_read(tmp_path: Path) -> None:
    """No CRC pass over the whole zip up front: a damaged member fails with InvalidInput when GDAL reads it."""
    path = vectors.shapefiles_zip(tmp_path / "bad.zip", {"roads": vectors.points_frame(500)})
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("roads.shp")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 10 : start + 60] = b"\xff" * 50  # the compressed .shp stream, damaged
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match=r"cannot be (opened|read)"):
        for _ in iter_batches(open_source(path, "shapefile_zip"), 100):
            pass
