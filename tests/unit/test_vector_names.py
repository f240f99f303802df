"""Laundering of table and column names (services/vector/names.py)."""

from __future__ import annotations

import pytest

from services.vector.names import (
    MAX_IDENTIFIER_BYTES,
    launder,
    launder_columns,
    ledger_name,
    parse_token,
    run_token,
    staging_name,
    table_for_family,
    token_of_table,
    truncate_identifier,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Town Points", "town_points"),
        ("Zürich-Straßen (2024)", "zurich_strassen_2024"),
        ("2024 data", "_2024_data"),
        ("select", "select_"),
        ("  __x__  ", "x"),
        ("ÉLÉVATION", "elevation"),
        ("a;DROP TABLE x;--", "a_drop_table_x"),
        ("!!!", ""),
        ("Население 2020", "население_2020"),  # letters of every script are kept (identifiers are quoted)
        ("Πληθυσμός", "πληθυσμός"),
        ("Длина, км", "длина_км"),  # й-like letters keep their marks: only Latin accents are folded
        ("Район", "район"),
        ("人口 (千人)", "人口_千人"),
        ("١٢٣", "_١٢٣"),  # digits of any script: not a first character
    ],
)
def test_launder(raw: str, expected: str) -> None:
    assert launder(raw) == expected


def test_long_names_are_cut_to_63_bytes_and_stay_distinct() -> None:
    a, b = launder("x" * 100 + "a"), launder("x" * 100 + "b")
    assert len(a.encode()) <= MAX_IDENTIFIER_BYTES and len(b.encode()) <= MAX_IDENTIFIER_BYTES
    assert a != b
    assert truncate_identifier("short") == "short"


def test_columns_are_distinct_and_avoid_our_own() -> None:
    names = launder_columns(["Name", "name", "NAME ", "gid", "geom", "", "select", "x" * 80, "x" * 80])
    assert names[:3] == ["name", "name_2", "name_3"]
    assert names[3] == "gid_2" and names[4] == "geom_2"
    assert names[5] == "field_6" and names[6] == "select_"
    assert len(set(names)) == len(names) and all(len(n.encode()) <= 63 for n in names)


def test_family_tables_and_staging_names() -> None:
    assert table_for_family("roads", None) == "roads"
    assert table_for_family("roads", "lines") == "roads_lines"
    long = table_for_family("t" * 63, "polygons")
    assert long.endswith("_polygons") and len(long) <= 63
    job = "ab" * 32
    token = run_token(2, 3)
    assert staging_name(job, token, "points") == f"_ingest_{job[:16]}_r2a3_points"
    assert ledger_name(job, token) == f"_ingest_{job[:16]}_r2a3_chunks"
    assert parse_token(token) == (2, 3) and parse_token("r2") is None
    assert token_of_table(job, ledger_name(job, token)) == token and token_of_table(job, "other") is None
    assert token_of_table(job, staging_name(job, run_token(12, 1), "polygons")) == "r12a1"  # not r1's


def test_system_column_names_get_a_suffix() -> None:
    """xmin, ctid… are PostgreSQL system columns: a user column of that name is refused by CREATE TABLE."""
    names = launder_columns(["xmin", "XMAX", "cmin", "cmax", "ctid", "tableoid", "oid", "xmin_"])
    assert names == ["xmin_", "xmax_", "cmin_", "cmax_", "ctid_", "tableoid_", "oid_", "xmin__2"]


def test_multibyte_names_are_cut_by_bytes_and_stay_distinct() -> None:
    """63 bytes, not 63 characters: a cut never splits a character, and names equal after the cut stay distinct."""
    stem = "численность_населения_по_переписи_" * 2  # 2 bytes a letter
    names = launder_columns([stem + "мужчины", stem + "женщины", "人口" * 30, "人口" * 30, "人口" * 30])
    assert len(set(names)) == 5
    for name in names:
        assert len(name.encode()) <= MAX_IDENTIFIER_BYTES
        name.encode().decode("utf-8")  # whole characters only
    assert names[0].startswith("численность_населения") and names[2].startswith("人口人口")
    assert names[3].endswith("_2") and names[4].endswith("_3")
