"""Opening every supported vector format: what to hand to GDAL (pyogrio) or pyarrow, and how to read it in batches.

Zipped shapefiles and KMZ files are read in place through ``/vsizip/`` (no extraction). CSV files get their
coordinate columns detected from the header. GeoParquet is read with pyarrow (the GDAL in pyogrio has no
Parquet driver). Every problem with the file becomes an :class:`InvalidInput` naming it.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import csv
import json
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pyogrio.errors

from core.errors import InvalidInput

WGS84 = "EPSG:4326"

# extension -> format name
FORMATS: dict[str, str] = {
    "geojson": "geojson",
    "json": "geojson",
    "gpkg": "gpkg",
    "zip": "shapefile_zip",
    "csv": "csv",
    "txt": "csv",
    "tsv": "csv",
    "kml": "kml",
    "kmz": "kmz",
    "parquet": "geoparquet",
    "geoparquet": "geoparquet",
    "fgb": "flatgeobuf",
}
# formats whose coordinates are WGS84 by definition (when the file declares nothing)
WGS84_FORMATS = frozenset({"geojson", "csv", "kml", "kmz"})

LAT_NAMES = ("lat", "latitude", "y", "lat_dd", "ycoord", "y_coord", "point_y")
LON_NAMES = ("lon", "lng", "long", "longitude", "x", "lon_dd", "xcoord", "x_coord", "point_x")
WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "wkt_geom", "shape", "geometry_wkt")
SEPARATORS = {",": "COMMA", ";": "SEMICOLON", "\t": "TAB", " ": "SPACE", "|": "PIPE"}


def format_of(extension: str) -> str:
    """The format name of a file extension (without the dot); InvalidInput listing the supported ones."""
    ext = extension.lower().lstrip(".")
    if ext == "shp":
        raise InvalidInput(
            "a bare .shp cannot be ingested: upload the shapefile with its .dbf, .shx (and .prj, .cpg) as a .zip",
            field="file_extension",
        )
    if ext not in FORMATS:
        raise InvalidInput(
            f"unsupported file extension {ext!r}: use one of {', '.join(sorted(FORMATS))}", field="file_extension"
        )
    return FORMATS[ext]


@dataclass(frozen=True)
class CsvOptions:
    lat_column: str | None = None
    lon_column: str | None = None
    wkt_column: str | None = None
    delimiter: str | None = None


@dataclass
class Source:
    """One layer of a file, ready to be read in batches."""

    format: str
    path: str  # what pyogrio (or pyarrow for GeoParquet) opens
    layer: str | None
    layers: list[str]
    crs: str | None  # as declared by the file (EPSG:xxxx or WKT/PROJJSON), None when it declares none
    feature_count: int  # -1 when unknown without reading
    open_options: dict[str, str] = field(default_factory=dict)
    encoding: str | None = None
    geometry_column: str | None = None  # GeoParquet: the primary geometry column

    @property
    def default_crs(self) -> str | None:
        return WGS84 if self.format in WGS84_FORMATS else None


@dataclass
class Batch:
    """Attribute columns and the geometry as WKB (None for a missing geometry)."""

    attributes: pa.Table
    wkb: pa.Array


@dataclass(frozen=True)
class ZipLimits:
    """What a zip (zipped shapefile, KMZ) may hold, checked from its directory before anything is decompressed."""

    max_bytes: int = 20_000_000_000
    max_ratio: int = 1000
    max_members: int = 10_000


def _zip_members(path: Path, limits: ZipLimits) -> list[str]:
    """The files of a zip, after checking its directory against ``limits`` (nothing is decompressed here; a
    corrupt member shows when GDAL reads it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise InvalidInput(f"the file is not a readable zip archive: {exc}") from exc
    except (RuntimeError, NotImplementedError) as exc:  # unsupported features of the directory
        raise InvalidInput(f"the zip archive cannot be read: {exc}") from exc
    if len(infos) > limits.max_members:
        raise InvalidInput(f"the zip holds {len(infos)} members, more than the {limits.max_members} allowed")
    total = sum(info.file_size for info in infos)
    if total > limits.max_bytes:
        raise InvalidInput(f"the zip holds {total} bytes uncompressed, more than the {limits.max_bytes} allowed")
    for info in infos:
        if info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise InvalidInput(
                f"zip member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f} times "
                f"(more than {limits.max_ratio}): refused as a possible zip bomb"
            )
        if info.flag_bits & 0x1:
            raise InvalidInput(f"zip member {info.filename!r} is encrypted")
    return [i.filename for i in infos if not i.is_dir() and not i.filename.startswith("__MACOSX/")]


def _shapefile_in_zip(path: Path, layer_name: str | None, limits: ZipLimits) -> tuple[str, str]:
    """(member path of the .shp, layer name) of the shapefile to read from a zip. ``layer_name`` is the .shp's
    stem when no other shapefile has it, or its path in the zip (with or without .shp)."""
    members = _zip_members(path, limits)
    lowered = {m.lower(): m for m in members}
    shapefiles = sorted(m for m in members if m.lower().endswith(".shp"))
    if not shapefiles:
        listing = ", ".join(members[:20]) or "nothing"
        raise InvalidInput(f"the zip holds no .shp file (it holds: {listing})")
    stems = collections.Counter(PurePosixPath(m).stem for m in shapefiles)
    # how each shapefile is named in messages: its stem when unique, else its path without .shp
    names = {m: PurePosixPath(m).stem if stems[PurePosixPath(m).stem] == 1 else m[:-4] for m in shapefiles}
    listing = ", ".join(sorted(names.values()))
    if layer_name is not None:
        wanted = layer_name.removesuffix(".shp")
        matches = [m for m in shapefiles if wanted in (PurePosixPath(m).stem, m[:-4])] or [
            m for m in shapefiles if wanted.lower() in (PurePosixPath(m).stem.lower(), m[:-4].lower())
        ]
        if len(matches) != 1:
            problem = "is ambiguous" if matches else "not found"
            raise InvalidInput(
                f"layer {layer_name!r} {problem} in the zip; its shapefiles are: {listing}", field="layer_name"
            )
        chosen = matches[0]
    elif len(shapefiles) > 1:
        raise InvalidInput(
            f"the zip holds {len(shapefiles)} shapefiles; pass layer_name, one of: {listing}", field="layer_name"
        )
    else:
        chosen = shapefiles[0]
    base = chosen[:-4].lower()
    missing = [ext for ext in (".dbf", ".shx") if base + ext not in lowered]
    if missing:
        raise InvalidInput(f"{chosen} in the zip has no {' and no '.join(missing)} file next to it")
    return chosen, PurePosixPath(chosen).stem


def _kml_in_kmz(path: Path, limits: ZipLimits) -> str:
    members = _zip_members(path, limits)
    kmls = [m for m in members if m.lower().endswith(".kml")]
    if not kmls:
        raise InvalidInput("the KMZ holds no .kml document")
    return next((m for m in kmls if m.lower() == "doc.kml"), kmls[0])


def _read_header(path: Path, encoding: str | None, delimiter: str | None) -> tuple[list[str], str]:
    """The CSV's column names and its delimiter (sniffed from the first line when not given)."""
    codec = encoding or "utf-8"
    try:
        codecs.lookup(codec)
    except LookupError as exc:
        raise InvalidInput(f"unknown encoding {codec!r}", field="encoding") from exc
    try:
        with open(path, encoding=codec, newline="") as handle:
            first = handle.readline()
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the CSV header cannot be decoded as {codec}: {exc.reason}; pass the right 'encoding'",
            field="encoding",
        ) from exc
    first = first.lstrip("\ufeff")
    if not first.strip():
        raise InvalidInput("the CSV file is empty (no header line)")
    if delimiter is None:
        counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
        delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    header = next(csv.reader([first], delimiter=delimiter))
    return [h.strip() for h in header], delimiter


def _pick(header: list[str], wanted: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    if wanted is not None:
        for name in header:
            if name == wanted or name.lower() == wanted.lower():
                return name
        raise InvalidInput(f"the CSV has no column {wanted!r} ({what}); its columns: {', '.join(header)}")
    by_lower = {h.lower(): h for h in header}
    return next((by_lower[c] for c in candidates if c in by_lower), None)


def csv_open_options(path: Path, options: CsvOptions, encoding: str | None) -> dict[str, str]:
    """GDAL CSV open options that read the coordinates from the detected (or named) columns."""
    if options.delimiter is not None and options.delimiter not in SEPARATORS:
        raise InvalidInput(
            f"unsupported delimiter {options.delimiter!r}: use one of {', '.join(map(repr, SEPARATORS))}",
            field="delimiter",
        )
    header, delimiter = _read_header(path, encoding, options.delimiter)
    if delimiter not in SEPARATORS:
        raise InvalidInput(f"unsupported delimiter {delimiter!r}", field="delimiter")
    # the column types are guessed from the whole file (AUTODETECT_SIZE_LIMIT=0): guessed from its first MB only,
    # a later value that does not fit the guess (an "12abc" in a column of integers) would silently become NULL
    found: dict[str, str] = {
        "AUTODETECT_TYPE": "YES",
        "AUTODETECT_SIZE_LIMIT": "0",
        "SEPARATOR": SEPARATORS[delimiter],
        "HEADERS": "YES",
    }
    if options.wkt_column is None and (options.lat_column is not None or options.lon_column is not None):
        lat = _pick(header, options.lat_column, LAT_NAMES, "lat_column")
        lon = _pick(header, options.lon_column, LON_NAMES, "lon_column")
        wkt = None
    else:
        wkt = _pick(header, options.wkt_column, WKT_NAMES, "wkt_column")
        lat = _pick(header, None, LAT_NAMES, "lat_column") if wkt is None else None
        lon = _pick(header, None, LON_NAMES, "lon_column") if wkt is None else None
    if wkt is not None:
        found |= {"GEOM_POSSIBLE_NAMES": wkt, "KEEP_GEOM_COLUMNS": "NO"}
    elif lat is not None and lon is not None:
        found |= {"X_POSSIBLE_NAMES": lon, "Y_POSSIBLE_NAMES": lat, "KEEP_GEOM_COLUMNS": "YES"}
    else:
        raise InvalidInput(
            "the CSV has no recognisable coordinates: name them with lat_column and lon_column, or wkt_column "
            f"(columns found: {', '.join(header)})"
        )
    return found


def _transcoded(path: Path, encoding: str, folder: Path) -> Path:
    """A UTF-8 copy (in ``folder``) of a text file in ``encoding``."""
    target = folder / f"{path.stem}.utf8{path.suffix}"
    try:
        with (
            open(path, encoding=encoding, newline="") as source,
            open(target, "w", encoding="utf-8", newline="") as out,
        ):
            while block := source.read(1 << 20):
                out.write(block)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the file cannot be decoded as {encoding}: {exc.reason}", field="encoding") from exc
    return target


def _ogr_info(path: str, layer: str | None, options: dict[str, str], encoding: str | None) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # GDAL notes (e.g. unusual field widths)
            return dict(pyogrio.read_info(path, layer=layer, encoding=encoding, **options))
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise InvalidInput(f"the file cannot be read: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _list_layers(path: str) -> list[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return [str(row[0]) for row in pyogrio.list_layers(path)]
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise InvalidInput(f"the file cannot be opened as vector data: {_first_line(exc)}") from exc


def _choose_layer(layers: list[str], layer_name: str | None) -> str:
    if not layers:
        raise InvalidInput("the file holds no layers")
    if layer_name is None:
        return layers[0]
    if layer_name in layers:
        return layer_name
    raise InvalidInput(
        f"layer {layer_name!r} not found; the file's layers are: {', '.join(layers)}", field="layer_name"
    )


def _parquet_source(path: Path, layer_name: str | None) -> Source:
    try:
        meta = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"the file is not a readable Parquet file: {_first_line(exc)}") from exc
    raw = (schema.metadata or {}).get(b"geo")
    if raw is None:
        raise InvalidInput("the Parquet file has no GeoParquet 'geo' metadata (not a GeoParquet file)")
    try:
        geo = json.loads(raw)
        column = geo["primary_column"]
        info = geo["columns"][column]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput("the GeoParquet 'geo' metadata is malformed") from exc
    if str(info.get("encoding", "WKB")).upper() != "WKB":
        raise InvalidInput(f"GeoParquet geometry encoding {info.get('encoding')!r} is not supported; use WKB")
    if "crs" not in info:
        crs: str | None = "OGC:CRS84"  # the GeoParquet default when the key is absent
    else:
        crs = json.dumps(info["crs"]) if isinstance(info["crs"], dict) else info["crs"]
    if layer_name is not None and layer_name != path.stem:
        raise InvalidInput(f"layer {layer_name!r} not found; the file's layers are: {path.stem}", field="layer_name")
    return Source(
        format="geoparquet",
        path=str(path),
        layer=path.stem,
        layers=[path.stem],
        crs=crs,
        feature_count=meta.num_rows,
        geometry_column=column,
    )


def open_source(
    path: Path,
    fmt: str,
    *,
    layer_name: str | None = None,
    csv_options: CsvOptions | None = None,
    encoding: str | None = None,
    scratch: Path | None = None,
    zip_limits: ZipLimits | None = None,
) -> Source:
    """Inspect a downloaded file: its layers, the chosen layer, its CRS and feature count."""
    limits = zip_limits or ZipLimits()
    if not path.exists() or path.stat().st_size == 0:
        raise InvalidInput("the file is empty")
    if fmt == "geoparquet":
        return _parquet_source(path, layer_name)
    options: dict[str, str] = {}
    gdal_path = str(path)
    if fmt == "shapefile_zip":
        member, _ = _shapefile_in_zip(path, layer_name, limits)
        gdal_path = f"/vsizip/{path}/{member}"
        layer_name = None
    elif fmt == "kmz":
        gdal_path = f"/vsizip/{path}/{_kml_in_kmz(path, limits)}"
    elif fmt == "csv":
        options = csv_open_options(path, csv_options or CsvOptions(), encoding)
        if encoding is not None and codecs.lookup(encoding).name != "utf-8":
            path = _transcoded(path, encoding, scratch or path.parent)  # GDAL's Arrow reader only returns UTF-8
            gdal_path, encoding = str(path), None
    if fmt == "shapefile_zip" and encoding is not None:
        options = {"ENCODING": encoding}  # wins over the .cpg
        encoding = None
    layers = _list_layers(gdal_path)
    layer = _choose_layer(layers, layer_name)
    info = _ogr_info(gdal_path, layer, options, encoding)
    return Source(
        format=fmt,
        path=gdal_path,
        layer=layer,
        layers=layers,
        crs=info.get("crs"),
        feature_count=int(info.get("features", -1) if info.get("features") is not None else -1),
        open_options=options,
        encoding=encoding,
    )


def iter_batches(source: Source, batch_size: int) -> Iterator[Batch]:
    """The layer's features in batches of ``batch_size`` rows: attributes and WKB geometry."""
    if source.format == "geoparquet":
        yield from _parquet_batches(source, batch_size)
        return
    try:
        with (
            warnings.catch_warnings(),
            pyogrio.raw.open_arrow(
                source.path,
                layer=source.layer,
                encoding=source.encoding,
                batch_size=batch_size,
                use_pyarrow=True,
                **source.open_options,
            ) as (meta, reader),
        ):
            warnings.simplefilter("ignore", RuntimeWarning)
            geometry = meta.get("geometry_name") or "wkb_geometry"
            for record_batch in _guarded(reader):
                table = pa.Table.from_batches([record_batch])
                names = table.column_names
                if geometry in names:
                    wkb = table.column(geometry).combine_chunks()
                    table = table.drop_columns([geometry])
                else:
                    wkb = pa.nulls(table.num_rows, pa.binary())
                yield Batch(_validated(table, source), _plain_binary(wkb))
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, pyogrio.errors.FieldError) as exc:
        raise InvalidInput(f"the file cannot be read: {_first_line(exc)}") from exc


def _guarded(reader: Any) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(f"the file cannot be read: {_first_line(exc)}") from exc
        yield batch


def _validated(table: pa.Table, source: Source) -> pa.Table:
    """The table, after checking its text is valid UTF-8 (else the encoding was wrong)."""
    try:
        table.validate(full=True)
    except pa.ArrowInvalid as exc:
        hint = "pass the file's 'encoding' (e.g. latin-1)" if source.format == "csv" else "add a .cpg or pass encoding"
        raise InvalidInput(f"the file holds text that cannot be decoded: {_first_line(exc)}; {hint}") from exc
    return table


def _plain_binary(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if pa.types.is_large_binary(array.type):
        return array
    return array.cast(pa.binary())


def _parquet_batches(source: Source, batch_size: int) -> Iterator[Batch]:
    column = source.geometry_column
    assert column is not None
    with contextlib.closing(pq.ParquetFile(source.path)) as parquet:
        try:
            for record_batch in parquet.iter_batches(batch_size=batch_size):
                table = pa.Table.from_batches([record_batch])
                wkb = _plain_binary(table.column(column))
                yield Batch(_validated(table.drop_columns([column]), source), wkb)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInput(f"the Parquet file cannot be read: {_first_line(exc)}") from exc
