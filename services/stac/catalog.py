"""The STAC catalog in PgSTAC: collections, item upserts with extent upkeep, reads and status.

All SQL runs inside a transaction with ``SET LOCAL search_path = pgstac, public`` (PgBouncer transaction
mode keeps no session state). Writes to one collection are serialised by a transaction-scoped advisory
lock, so concurrent tasks can create the same collection and widen its extent without losing updates.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pypgstac.hydration import dehydrate

from core.errors import InvalidInput, NotFound, ServiceUnavailable
from infrastructure.db.database import Database
from services.stac.items import STAC_VERSION, validate_stac_id

#: the collections ``POST /api/stac/init`` and the ``stac_setup`` job create
DEFAULT_COLLECTIONS: dict[str, dict[str, Any]] = {
    "cogs": {
        "title": "Cloud Optimized GeoTIFFs",
        "description": "Rasters converted by process_raster: one item per source raster, one asset per tier "
        "(visualization JPEG, analysis DEFLATE, archive LZW).",
        "keywords": ["raster", "cog"],
    },
    "vectors": {
        "title": "Vector tables",
        "description": "Vector datasets loaded into PostGIS by ingest_vector: one item per table.",
        "keywords": ["vector", "postgis"],
    },
    "extracted": {
        "title": "Extracted rasters",
        "description": "Items built from rasters as they are in storage (POST /api/stac/extract).",
        "keywords": ["raster"],
    },
}

WORLD_BBOX = [-180.0, -90.0, 180.0, 90.0]
_LOCK_PREFIX = "geoetl.stac.collection:"


#: SQL states of errors that come from the caller's input when pgstac builds SQL from it (a search filter)
_INPUT_SQLSTATES = frozenset({"42883", "42804", "42601"})  # undefined_function, datatype_mismatch, syntax_error
#: how GEOS (through PostGIS) words its errors; they come as XX000 internal errors
_GEOS_MARKERS = ("GEOS", "TopologyException")


def _from_input(exc: psycopg.Error) -> bool:
    """Whether the error is one the caller's input causes: see :data:`_INPUT_SQLSTATES`, 22xxx data
    exceptions, and GEOS errors (recognised by their text); not permissions, internal errors or outages."""
    state = exc.sqlstate or ""
    if state in _INPUT_SQLSTATES or state.startswith("22"):
        return True
    return state == "XX000" and any(marker in str(exc) for marker in _GEOS_MARKERS)


@contextmanager
def stac_transaction(db: Database, *, refused: str | None = None) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A transaction with pgstac first on the search path; pgstac's own errors become InvalidInput.

    pgstac's refusals (its RAISE EXCEPTIONs, integrity and data errors) are InvalidInput. Any other SQL error
    (undefined function or table, syntax, type mismatch, permission, an internal error) is ServiceUnavailable
    when pgstac is not installed. Otherwise, with ``refused`` given (SQL made by pgstac from the caller's
    input, e.g. a search filter), the errors the input causes (:func:`_from_input`) are InvalidInput starting
    with ``refused`` and the others (a missing privilege, an internal error) ServiceUnavailable; without
    ``refused`` they are re-raised.
    """
    try:
        with db.transaction() as conn:
            conn.execute("SET LOCAL search_path = pgstac, public")
            yield conn
    except (psycopg.errors.RaiseException, psycopg.errors.IntegrityError, psycopg.errors.DataException) as exc:
        raise InvalidInput(f"pgstac refused the request: {_first_line(exc)}") from None
    except (psycopg.ProgrammingError, psycopg.errors.InternalError_) as exc:
        if not pgstac_installed(db):
            raise ServiceUnavailable(
                f"pgstac is not installed in this database ({_first_line(exc)}); run POST /api/db/migrate"
            ) from None
        if refused is None:
            raise
        if _from_input(exc):
            raise InvalidInput(f"{refused}: {_first_line(exc)}") from None
        raise ServiceUnavailable(
            f"the STAC database failed ({exc.sqlstate or type(exc).__name__}: {_first_line(exc)})"
        ) from None


def pgstac_installed(db: Database) -> bool:
    """Whether pgstac's ``search(jsonb)`` exists in the database (asked in a transaction of its own)."""
    with db.transaction() as conn:
        row = conn.execute("SELECT to_regprocedure('pgstac.search(jsonb)') IS NOT NULL AS installed").fetchone()
    return bool(row and row["installed"])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def collection_document(
    collection_id: str, *, title: str | None = None, description: str | None = None
) -> dict[str, Any]:
    """A new STAC 1.1 Collection: defaults from :data:`DEFAULT_COLLECTIONS`, a world extent until items come."""
    defaults = DEFAULT_COLLECTIONS.get(collection_id, {})
    document: dict[str, Any] = {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "id": collection_id,
        "title": title or defaults.get("title") or collection_id,
        "description": description or defaults.get("description") or f"Items of the {collection_id} collection",
        "license": "other",
        "extent": {"spatial": {"bbox": [list(WORLD_BBOX)]}, "temporal": {"interval": [[None, None]]}},
        "links": [],
    }
    if defaults.get("keywords"):
        document["keywords"] = list(defaults["keywords"])
    return document


def _lock(conn: psycopg.Connection[Any], collection_id: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_LOCK_PREFIX + collection_id,))


def _load_collection(conn: psycopg.Connection[dict[str, Any]], collection_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT content FROM collections WHERE id = %s", (collection_id,)).fetchone()
    return None if row is None else dict(row["content"])


def _ensure(
    conn: psycopg.Connection[dict[str, Any]], collection_id: str, title: str | None, description: str | None
) -> tuple[dict[str, Any], bool]:
    _lock(conn, collection_id)
    existing = _load_collection(conn, collection_id)
    if existing is not None:
        return existing, False
    document = collection_document(collection_id, title=title, description=description)
    conn.execute("SELECT create_collection(%s)", (Jsonb(document),))
    return document, True


def ensure_collection(
    db: Database, collection_id: str, *, title: str | None = None, description: str | None = None
) -> bool:
    """Create the collection unless it exists (idempotent, safe under concurrency); True when created."""
    validate_stac_id(collection_id, "collection id")
    with stac_transaction(db) as conn:
        return _ensure(conn, collection_id, title, description)[1]


def ensure_default_collections(db: Database) -> dict[str, bool]:
    """Every collection of :data:`DEFAULT_COLLECTIONS`, created if missing: id -> created now."""
    return {cid: ensure_collection(db, cid) for cid in DEFAULT_COLLECTIONS}


def _check_item(item: Mapping[str, Any]) -> tuple[str, str]:
    if not isinstance(item, Mapping):
        raise InvalidInput("a STAC item must be a JSON object")
    item_id = validate_stac_id(item.get("id"), "item id")  # type: ignore[arg-type]
    collection_id = validate_stac_id(item.get("collection"), "collection id")  # type: ignore[arg-type]
    if item.get("type") != "Feature":
        raise InvalidInput(f"item {item_id!r}: 'type' must be 'Feature'")
    properties = item.get("properties")
    if not isinstance(properties, Mapping):
        raise InvalidInput(f"item {item_id!r} has no properties object")
    if properties.get("datetime") is None and not (properties.get("start_datetime") and properties.get("end_datetime")):
        raise InvalidInput(f"item {item_id!r} needs a datetime, or a start_datetime and an end_datetime")
    return item_id, collection_id


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    """RFC 3339 in UTC, with the fraction of a second only when there is one (the extent must hold the item)."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def _item_extent(item: Mapping[str, Any]) -> tuple[list[float] | None, datetime | None, datetime | None]:
    bbox = item.get("bbox")
    spatial: list[float] | None = None
    if isinstance(bbox, list | tuple) and len(bbox) in (4, 6):
        half = len(bbox) // 2
        west, south, east, north = bbox[0], bbox[1], bbox[half], bbox[half + 1]
        if west > east:  # crosses the antimeridian: the collection extent spans all longitudes
            west, east = -180.0, 180.0
        spatial = [float(west), float(south), float(east), float(north)]
    props = item.get("properties") or {}
    start = _parse_time(props.get("start_datetime")) or _parse_time(props.get("datetime"))
    end = _parse_time(props.get("end_datetime")) or _parse_time(props.get("datetime"))
    return spatial, start, end


def merged_extent(extent: Mapping[str, Any], item: Mapping[str, Any], *, first_item: bool) -> dict[str, Any]:
    """The collection ``extent`` widened to hold ``item`` (replaced by the item's when it is the first)."""
    spatial, start, end = _item_extent(item)
    result = copy.deepcopy(dict(extent)) if extent else {}
    result.setdefault("spatial", {"bbox": [list(WORLD_BBOX)]})
    result.setdefault("temporal", {"interval": [[None, None]]})
    if spatial is not None:
        old = result["spatial"].get("bbox") or [list(WORLD_BBOX)]
        if first_item:
            overall = spatial
        else:
            box = old[0]
            overall = [
                min(box[0], spatial[0]),
                min(box[1], spatial[1]),
                max(box[2], spatial[2]),
                max(box[3], spatial[3]),
            ]
        result["spatial"]["bbox"] = [overall, *old[1:]] if not first_item else [overall]
    interval = (result["temporal"].get("interval") or [[None, None]])[0]
    old_start, old_end = (None, None) if first_item else (_parse_time(interval[0]), _parse_time(interval[1]))
    new_start = min(t for t in (old_start, start) if t is not None) if (old_start or start) else None
    new_end = max(t for t in (old_end, end) if t is not None) if (old_end or end) else None
    result["temporal"]["interval"] = [[_iso(new_start) if new_start else None, _iso(new_end) if new_end else None]]
    return result


def _stored_created(conn: psycopg.Connection[dict[str, Any]], collection_id: str, ids: list[str]) -> dict[str, Any]:
    """item id -> the ``created`` of the stored item, for those of ``ids`` that exist and have one."""
    rows = conn.execute(
        "SELECT id, content->'properties'->'created' AS created FROM items"
        " WHERE collection = %s AND id = ANY(%s) AND content->'properties' ? 'created'",
        (collection_id, ids),
    ).fetchall()
    return {r["id"]: r["created"] for r in rows}


def _keep_created(item: Mapping[str, Any], created: Any) -> dict[str, Any]:
    """``item`` (a copy) with the stored item's ``created``: replacing an item does not make it new."""
    document = dict(item)
    if created is not None:
        document["properties"] = {**document["properties"], "created": created}
    return document


def upsert_item(
    db: Database, item: Mapping[str, Any], *, guard: Callable[[psycopg.Connection[Any]], None] | None = None
) -> None:
    """Insert or replace the item; its collection is created if missing and its extent widened to hold it.

    Replacing an item keeps its stored ``properties.created`` (``updated`` is the new item's). ``guard`` runs
    first in the same transaction (e.g. ``ensure_run_alive``: publish only while the job run is alive)."""
    item_id, collection_id = _check_item(item)
    with stac_transaction(db) as conn:
        if guard is not None:
            guard(conn)
        collection, _ = _ensure(conn, collection_id, None, None)  # the lock: no other writer in between
        others = conn.execute(
            "SELECT 1 FROM items WHERE collection = %s AND id <> %s LIMIT 1", (collection_id, item_id)
        ).fetchone()
        created = _stored_created(conn, collection_id, [item_id]).get(item_id)
        conn.execute("SELECT upsert_item(%s)", (Jsonb(_keep_created(item, created)),))
        extent = merged_extent(collection.get("extent") or {}, item, first_item=others is None)
        if extent != collection.get("extent"):
            conn.execute("SELECT update_collection(%s)", (Jsonb({**collection, "extent": extent}),))


def _slim(item: Mapping[str, Any], base_item: Mapping[str, Any], base_item_id: int | None) -> dict[str, Any]:
    """The item's ``content`` column as pgstac stores it: what differs from the collection's base item
    (pypgstac's own dehydration, the one ``pypgstac load`` uses), tagged with the base item's version."""
    content = dehydrate(dict(base_item), dict(item))
    for key in ("id", "collection", "geometry", "pgstac:base_item"):
        content.pop(key, None)
    if base_item_id is not None:
        content["pgstac:base_item"] = base_item_id
    return content


def _load_batch(conn: psycopg.Connection[dict[str, Any]], collection_id: str, documents: list[dict[str, Any]]) -> None:
    """Upsert ``documents`` (items of one collection, unique ids) the way pgstac's staging trigger does, with
    the content dehydrated here instead of row by row in PL/pgSQL: COPY into a transaction's temporary table,
    pgstac's ``stac_geom``/``stac_datetime``/``check_partition``, then lock the changed rows in pgstac's order
    (collection, id), delete them and insert."""
    base = conn.execute("SELECT base_item, base_item_id FROM current_base_item(%s)", (collection_id,)).fetchone()
    base_item, base_item_id = (base["base_item"] or {}, base["base_item_id"]) if base else ({}, None)
    conn.execute("SET LOCAL timezone = 'UTC'")  # partitions are cut at UTC dates, as in pgstac's trigger
    conn.execute("CREATE TEMP TABLE geoetl_stac_load (item jsonb, content jsonb) ON COMMIT DROP")
    with conn.cursor().copy("COPY geoetl_stac_load (item, content) FROM STDIN") as copy:
        for document in documents:
            slim = _slim(document, base_item, base_item_id)
            copy.write_row((json.dumps(document), json.dumps(slim)))
    conn.execute(
        "CREATE TEMP TABLE geoetl_stac_rows ON COMMIT DROP AS SELECT item->>'id' AS id, stac_geom(item) AS geometry,"
        " item->>'collection' AS collection, stac_datetime(item) AS datetime, stac_end_datetime(item) AS end_datetime,"
        " content FROM geoetl_stac_load"
    )
    conn.execute(
        "SELECT check_partition(collection, tstzrange(min(datetime), max(datetime), '[]'),"
        " tstzrange(min(end_datetime), max(end_datetime), '[]')) FROM ("
        " SELECT r.collection, r.datetime, r.end_datetime,"
        " COALESCE(date_trunc(c.partition_trunc::text, r.datetime), '-infinity') AS period"
        " FROM geoetl_stac_rows r JOIN collections c ON c.id = r.collection) AS x"
        " GROUP BY collection, period ORDER BY collection, period"
    )
    # the changed rows are locked first in pgstac's order (as its staging trigger does), so that this load and
    # other writers (pypgstac loads, a STAC API) upserting overlapping items cannot deadlock; a bare DELETE
    # would lock them in whatever order its plan visits them
    conn.execute(
        "WITH locked AS (SELECT i.collection, i.id FROM geoetl_stac_rows s"
        " JOIN items i ON i.collection = s.collection AND i.id = s.id WHERE i.collection = %s"
        " AND (i.geometry, i.datetime, i.end_datetime, i.content)"
        " IS DISTINCT FROM (s.geometry, s.datetime, s.end_datetime, s.content)"
        " ORDER BY i.collection, i.id FOR UPDATE OF i)"
        " DELETE FROM items d USING locked l WHERE d.collection = l.collection AND d.id = l.id",
        (collection_id,),
    )
    conn.execute(
        "INSERT INTO items (id, geometry, collection, datetime, end_datetime, content)"
        " SELECT id, geometry, collection, datetime, end_datetime, content FROM geoetl_stac_rows"
        " ON CONFLICT DO NOTHING"
    )


def upsert_items(db: Database, items: Sequence[Mapping[str, Any]], *, batch_size: int = 500) -> int:
    """Upsert many items, one transaction per batch and collection (the item last in ``items`` wins for an
    id given twice); their collections are created if missing and widened to hold them, and replaced items
    keep their stored ``created``. Returns the number of items given.

    Faster than pgstac's ``upsert_items()``: the items are dehydrated here (see :func:`_load_batch`)."""
    by_collection: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        by_collection.setdefault(_check_item(item)[1], []).append(item)
    for collection_id, members in by_collection.items():
        unique = list({str(item["id"]): item for item in members}.values())
        for start in range(0, len(unique), batch_size):
            batch = unique[start : start + batch_size]
            ids = [str(item["id"]) for item in batch]
            with stac_transaction(db) as conn:
                collection, _ = _ensure(conn, collection_id, None, None)
                others = conn.execute(
                    "SELECT 1 FROM items WHERE collection = %s AND NOT (id = ANY(%s)) LIMIT 1", (collection_id, ids)
                ).fetchone()
                created = _stored_created(conn, collection_id, ids)
                documents = [_keep_created(item, created.get(str(item["id"]))) for item in batch]
                _load_batch(conn, collection_id, documents)
                extent = collection.get("extent") or {}
                for index, item in enumerate(batch):
                    extent = merged_extent(extent, item, first_item=others is None and index == 0)
                if extent != collection.get("extent"):
                    conn.execute("SELECT update_collection(%s)", (Jsonb({**collection, "extent": extent}),))
    return len(items)


def refresh_collection_extent(db: Database, collection_id: str) -> dict[str, Any]:
    """Recompute the collection's extent exactly from its items (after deletions); returns the new extent."""
    validate_stac_id(collection_id, "collection id")
    with stac_transaction(db) as conn:
        _lock(conn, collection_id)
        collection = _load_collection(conn, collection_id)
        if collection is None:
            raise NotFound(f"no STAC collection {collection_id!r}", collection_id=collection_id)
        row = conn.execute(
            "SELECT st_xmin(e) AS w, st_ymin(e) AS s, st_xmax(e) AS e, st_ymax(e) AS n, start, finish FROM ("
            " SELECT st_extent(geometry)::geometry AS e, min(datetime) AS start, max(end_datetime) AS finish"
            " FROM items WHERE collection = %s) AS x",
            (collection_id,),
        ).fetchone()
        extent: dict[str, Any] = collection_document(collection_id)["extent"]
        if row is not None and row["w"] is not None:
            extent["spatial"]["bbox"] = [[row["w"], row["s"], row["e"], row["n"]]]
            extent["temporal"]["interval"] = [[_iso(row["start"]), _iso(row["finish"])]]
        conn.execute("SELECT update_collection(%s)", (Jsonb({**collection, "extent": extent}),))
        return extent


def get_item(db: Database, collection_id: str, item_id: str) -> dict[str, Any] | None:
    """The stored item, or None when the collection or the item does not exist."""
    validate_stac_id(collection_id, "collection id")
    validate_stac_id(item_id, "item id")
    with stac_transaction(db) as conn:
        if _load_collection(conn, collection_id) is None:
            return None
        row = conn.execute("SELECT get_item(%s, %s) AS item", (item_id, collection_id)).fetchone()
    return None if row is None or row["item"] is None else dict(row["item"])


def delete_item(db: Database, collection_id: str, item_id: str) -> bool:
    """Delete one item; False when it did not exist (the collection's extent is left as it is)."""
    validate_stac_id(collection_id, "collection id")
    validate_stac_id(item_id, "item id")
    with stac_transaction(db) as conn:
        row = conn.execute("SELECT 1 FROM items WHERE collection = %s AND id = %s", (collection_id, item_id)).fetchone()
        if row is None:
            return False
        conn.execute("SELECT delete_item(%s, %s)", (item_id, collection_id))
        return True


def get_collection(db: Database, collection_id: str) -> dict[str, Any] | None:
    """The stored collection document, or None."""
    validate_stac_id(collection_id, "collection id")
    with stac_transaction(db) as conn:
        return _load_collection(conn, collection_id)


def list_collections(db: Database) -> list[dict[str, Any]]:
    """Every collection document, by id."""
    with stac_transaction(db) as conn:
        rows = conn.execute("SELECT content FROM collections ORDER BY id").fetchall()
    return [dict(r["content"]) for r in rows]


def item_counts(db: Database) -> dict[str, int]:
    """Items per collection (collections without items included, with 0)."""
    with stac_transaction(db) as conn:
        rows = conn.execute(
            "SELECT c.id, (SELECT count(*) FROM items i WHERE i.collection = c.id) AS n"
            " FROM collections c ORDER BY c.id"
        ).fetchall()
    return {r["id"]: int(r["n"]) for r in rows}


def pgstac_status(db: Database) -> dict[str, Any]:
    """Whether pgstac is installed, its version, and each collection with its item count."""
    with db.transaction() as conn:
        row = conn.execute("SELECT to_regnamespace('pgstac') IS NOT NULL AS installed").fetchone()
        installed = bool(row and row["installed"])
        version = None
        if installed:
            found = conn.execute("SELECT to_regprocedure('pgstac.get_version()') IS NOT NULL AS has_version").fetchone()
            if found and found["has_version"]:
                version_row = conn.execute("SELECT pgstac.get_version() AS v").fetchone()
                version = version_row["v"] if version_row else None
    if not installed or version is None:
        return {"installed": False, "pgstac_version": None, "collections": [], "total_items": 0}
    counts = item_counts(db)
    return {
        "installed": True,
        "pgstac_version": version,
        "collections": [{"id": cid, "items": n} for cid, n in counts.items()],
        "total_items": sum(counts.values()),
        "default_collections": sorted(DEFAULT_COLLECTIONS),
        "missing_default_collections": sorted(set(DEFAULT_COLLECTIONS) - set(counts)),
    }
