"""Laundering of table, schema and column names into safe PostgreSQL identifiers.

A laundered name is lower case, made of letters (of any script: Cyrillic, Greek, CJK… stay as they are; accents
on Latin letters are folded, é → e), digits and ``_``, starts with a letter or ``_``, is not a reserved word nor a
system column name (``xmin_``, ``ctid_``…), and fits PostgreSQL's 63-byte identifier limit (cut by UTF-8 bytes,
never inside a character). Names are still always quoted with
``psycopg.sql.Identifier`` when used in SQL.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

MAX_IDENTIFIER_BYTES = 63

# PostgreSQL's reserved key words (and those reserved "can be function or type"), which cannot be bare column names
RESERVED_WORDS = frozenset(
    """
    all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate
    collation column concurrently constraint create cross current_catalog current_date current_role
    current_schema current_time current_timestamp current_user default deferrable desc distinct do else end
    except false fetch for foreign freeze from full grant group having ilike in initially inner intersect into
    is isnull join lateral leading left like limit localtime localtimestamp natural not notnull null offset on
    only or order outer overlaps placing primary references returning right select session_user similar some
    symmetric system_user table tablesample then to trailing true union unique user using variadic verbose when
    where window with
    """.split()  # noqa: SIM905
)

# PostgreSQL's system columns: a user column of that name is refused ("conflicts with a system column name")
SYSTEM_COLUMNS = frozenset({"oid", "tableoid", "xmin", "xmax", "cmin", "cmax", "ctid"})

# Columns every ingested table has; attributes with these names are renamed
ID_COLUMN = "gid"
GEOMETRY_COLUMN = "geom"
STAGING_PREFIX = "_ingest_"
# Schemas ingest_vector never writes to
PROTECTED_SCHEMAS = frozenset({"geoetl", "pgstac", "information_schema", "public", "h3"})

_UNDERSCORES = re.compile(r"_{2,}")


def _fold(text: str) -> str:
    """Lower case, compatibility characters decomposed, accents of Latin letters removed (é → e); letters of other
    scripts kept whole (й stays й), then recomposed (NFC)."""
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("ß", "ss"))
    kept: list[str] = []
    for char in decomposed:
        if unicodedata.combining(char) and kept and kept[-1].isascii():
            continue  # an accent on a Latin letter
        kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept)).lower()


def _safe(text: str) -> str:
    """Every run of characters other than letters, digits and ``_`` as one ``_``."""
    return _UNDERSCORES.sub("_", "".join(c if c.isalnum() or c == "_" else "_" for c in text))


def truncate_identifier(name: str, limit: int = MAX_IDENTIFIER_BYTES) -> str:
    """``name`` cut to ``limit`` UTF-8 bytes (never inside a character); a cut name ends with 6 hex digits of its
    hash so cut names stay distinct."""
    encoded = name.encode()
    if len(encoded) <= limit:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:6]
    head = encoded[: limit - 7].decode("utf-8", errors="ignore")  # a character cut in two is left out
    return f"{head.rstrip('_')}_{digest}"


def launder(name: str, *, fallback: str = "") -> str:
    """A safe identifier for ``name``; ``fallback`` when nothing usable is left ('' when none is given)."""
    text = _safe(_fold(str(name))).strip("_")
    if not text:
        return fallback
    if not text[0].isalpha():
        text = f"_{text}"
    if text in RESERVED_WORDS or text in SYSTEM_COLUMNS:
        text = f"{text}_"
    return truncate_identifier(text)


def launder_columns(names: Iterable[str], reserved: Iterable[str] = (ID_COLUMN, GEOMETRY_COLUMN)) -> list[str]:
    """Laundered, distinct column names in order: duplicates (also of ``reserved``) get ``_2``, ``_3``…"""
    taken = set(reserved)
    result: list[str] = []
    for position, name in enumerate(names, start=1):
        base = launder(name, fallback=f"field_{position}")
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            suffix = f"_{n}"
            candidate = truncate_identifier(base, MAX_IDENTIFIER_BYTES - len(suffix)) + suffix
        taken.add(candidate)
        result.append(candidate)
    return result


def table_for_family(base: str, family: str | None) -> str:
    """The table name of one geometry family (``<base>_polygons``), or ``base`` for a single-family file."""
    if family is None:
        return base
    suffix = f"_{family}"
    return truncate_identifier(base, MAX_IDENTIFIER_BYTES - len(suffix)) + suffix


def run_token(run: int, attempt: int) -> str:
    """What names one attempt of one run's prepare: its staging tables, ledger and chunk folder carry it, so
    attempts and runs of the same job never touch each other's objects."""
    return f"r{int(run)}a{int(attempt)}"


_TOKEN = re.compile(r"r(\d+)a(\d+)")


def parse_token(token: str) -> tuple[int, int] | None:
    """(run, attempt) of a :func:`run_token`, or None."""
    match = _TOKEN.fullmatch(token)
    return (int(match.group(1)), int(match.group(2))) if match else None


def job_table_prefix(job_id: str) -> str:
    """The name prefix of every staging and ledger table of a job (all runs and attempts)."""
    return f"{STAGING_PREFIX}{job_id[:16]}_"


def token_of_table(job_id: str, name: str) -> str | None:
    """The run token in the name of one of the job's staging or ledger tables, or None."""
    prefix = job_table_prefix(job_id)
    if not name.startswith(prefix):
        return None
    token = name[len(prefix) :].split("_", 1)[0]
    return token if parse_token(token) else None


def staging_name(job_id: str, token: str, family: str) -> str:
    """The staging table one prepare attempt loads one family into, renamed to the target at the end."""
    return f"{job_table_prefix(job_id)}{token}_{family}"


def ledger_name(job_id: str, token: str) -> str:
    """The table recording which chunks of a prepare attempt's plan are loaded (one row per chunk)."""
    return f"{job_table_prefix(job_id)}{token}_chunks"
