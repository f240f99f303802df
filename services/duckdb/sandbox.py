"""The DuckDB sandbox: which queries may run (decided by DuckDB's parser) and the locked connection they run on.

Two layers:

1. :func:`check_sql`, at submit, with no data: exactly one statement, of type SELECT
   (``extract_statements``), whose syntax tree (``json_serialize_sql``) uses only
   allowed table functions, whose file arguments are ``storage://`` string literals,
   and whose every table name is a ``WITH`` query in scope (resolved like DuckDB's
   binder: a CTE is visible in its own query node and below, to the CTEs after it,
   not to itself). Every refusal is an ``InvalidInput`` that says why (HTTP 400).
2. :func:`connect`, at run time: an in-memory database with external access off
   except for the storage folders of the query (``allowed_directories``), no
   extension auto-install or auto-load, no Python replacement scans, the spatial
   extension (when the query needs it) and the azure one (on Azure storage) loaded
   from their pip packages' files, memory and thread limits, then the configuration
   locked so no statement can change any of it. :func:`interrupt_after` cancels a
   query that runs too long.

The run-time layer alone keeps reads inside the named containers and the settings
locked; only the parser stops statements other than SELECT and reads of the catalog
(settings, databases, secrets' names): both layers are needed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from core.errors import InvalidInput
from services.duckdb.urls import Mapping, StorageUrl, is_storage_url, parse_storage_url

MAX_SQL_LENGTH = 100_000

# Table functions that read files: every positional argument must be a storage:// literal (or a list of them).
FILE_FUNCTIONS = frozenset(
    {
        "read_csv",
        "read_csv_auto",
        "sniff_csv",
        "read_parquet",
        "parquet_scan",
        "parquet_metadata",
        "parquet_schema",
        "parquet_file_metadata",
        "parquet_kv_metadata",
        "read_json",
        "read_json_auto",
        "read_json_objects",
        "read_json_objects_auto",
        "read_ndjson",
        "read_ndjson_auto",
        "read_ndjson_objects",
        "read_text",
        "read_blob",
        "glob",
        "st_read",
        "st_readosm",
        "st_readshp",
    }
)
# GDAL drivers ST_Read may use: formats whose files cannot point GDAL at other files or servers
# (OGR_VRT, GML schemas, LIBKML network links, WFS... could read outside storage behind DuckDB's back).
ST_READ_DRIVERS = (
    "GeoJSON",
    "GeoJSONSeq",
    "ESRIJSON",
    "TopoJSON",
    "JSONFG",
    "GPKG",
    "ESRI Shapefile",
    "FlatGeobuf",
    "KML",
    "GPX",
    "CSV",
    "MapInfo File",
    "OpenFileGDB",
    "DXF",
    "XLSX",
    "ODS",
)
# ST_Read open options a query may set (GPKG's PRELUDE_STATEMENTS, for one, runs SQL in SQLite).
ST_READ_OPEN_OPTIONS = frozenset(
    {
        "X_POSSIBLE_NAMES",
        "Y_POSSIBLE_NAMES",
        "Z_POSSIBLE_NAMES",
        "GEOM_POSSIBLE_NAMES",
        "KEEP_GEOM_COLUMNS",
        "AUTODETECT_TYPE",
        "AUTODETECT_WIDTH",
        "AUTODETECT_SIZE_LIMIT",
        "QUOTED_FIELDS_AS_STRING",
        "EMPTY_STRING_AS_NULL",
        "HEADERS",
        "SEPARATOR",
        "MERGE_SEPARATOR",
        "FLATTEN_NESTED_ATTRIBUTES",
        "NESTED_ATTRIBUTE_SEPARATOR",
        "ARRAY_AS_STRING",
        "DATE_AS_STRING",
        "NATIVE_DATA",
        "ENCODING",
        "FIELD_TYPES",
        "LIST_ALL_TABLES",
    }
)
# Table functions that read no files and reveal nothing about the host.
PURE_TABLE_FUNCTIONS = frozenset(
    {"range", "generate_series", "unnest", "json_each", "json_tree", "st_generatepoints", "st_drivers"}
)
ALLOWED_TABLE_FUNCTIONS = FILE_FUNCTIONS | PURE_TABLE_FUNCTIONS
# Scalar functions refused anywhere (environment, settings and secrets of the host).
DENIED_FUNCTIONS = frozenset({"getenv", "current_setting", "which_secret", "query", "query_table"})
_STATEMENT_NAMES = {
    "LOAD": "INSTALL or LOAD of an extension",
    "ATTACH": "ATTACH of a database",
    "DETACH": "DETACH of a database",
    "COPY": "COPY (reading or writing files)",
    "SET": "SET or RESET of a setting",
    "VARIABLE_SET": "SET VARIABLE",
    "PRAGMA": "PRAGMA",
    "EXPORT": "EXPORT DATABASE",
    "INSERT": "INSERT",
    "UPDATE": "UPDATE",
    "DELETE": "DELETE",
    "CREATE": "CREATE",
    "DROP": "DROP",
    "ALTER": "ALTER",
    "CALL": "CALL",
    "EXPLAIN": "EXPLAIN",
    "TRANSACTION": "a transaction statement",
}
# Bare table names DuckDB would open as files (FROM 'data.csv'): anything with a path or extension look.
_FILE_LIKE = ("/", ".", "\\", ":")
# Prefixes of the catalog views DuckDB and its extensions define (duckdb_settings, pg_settings, sqlite_master...).
_CATALOG_PREFIXES = ("duckdb_", "pg_", "pragma_", "sqlite_")


@dataclass(frozen=True)
class CheckedQuery:
    """A query that passed :func:`check_sql`: its text and where its storage URLs are written in it."""

    sql: str
    urls: tuple[StorageUrl, ...]
    # (start byte, end byte, url) of each storage literal in the UTF-8 text, in order
    spans: tuple[tuple[int, int, str], ...] = field(default=())
    # (byte offset, text) inserted as is: the allowed_drivers argument of each ST_Read call
    insertions: tuple[tuple[int, str], ...] = field(default=())
    # whether it calls a spatial function (ST_*): the spatial extension is loaded only then
    spatial: bool = False

    def rewritten(self, mapping: Mapping) -> str:
        """The SQL with each storage literal replaced by the mapped location, as a quoted string literal."""
        data = self.sql.encode("utf-8")
        parts: list[bytes] = []
        last = 0
        edits = [(start, end, _quote(mapping.paths[url])) for start, end, url in self.spans]
        edits += [(at, at, text) for at, text in self.insertions]
        for start, end, text in sorted(edits):
            parts += [data[last:start], text.encode("utf-8")]
            last = end
        parts.append(data[last:])
        return b"".join(parts).decode("utf-8")


def refuse(reason: str) -> InvalidInput:
    return InvalidInput(f"query refused: {reason}", field="sql")


@functools.lru_cache(maxsize=1)
def _parser() -> duckdb.DuckDBPyConnection:
    """A bare in-memory connection used only to parse (json_serialize_sql reads no data)."""
    return duckdb.connect(":memory:", config={"enable_external_access": False, "autoload_known_extensions": False})


_parser_lock = threading.Lock()


def check_sql(sql: str) -> CheckedQuery:
    """Check a query against the sandbox rules; the checked query, or InvalidInput saying why not."""
    if not isinstance(sql, str) or not sql.strip():
        raise refuse("the query is empty")
    if len(sql) > MAX_SQL_LENGTH:
        raise refuse(f"the query is {len(sql)} characters long; at most {MAX_SQL_LENGTH} are allowed")
    if "\x00" in sql:
        raise refuse("the query contains a NUL character")
    try:
        with _parser_lock:  # one private connection parses, never DuckDB's process-wide default one
            statements = _parser().extract_statements(sql)
    except duckdb.Error as exc:
        raise refuse(f"it is not valid SQL: {_first_line(exc)}") from None
    if len(statements) > 1 and any(not s.query.strip() for s in statements) and _has_keyword(sql, "pivot"):
        # DuckDB's parser expands a PIVOT without an IN list into a CREATE TYPE (the distinct values, read from
        # the data) and a SELECT, which cannot be checked as one query
        raise refuse(
            "a PIVOT without an IN list (PIVOT ... ON <column> USING ...) is not supported: list the values "
            "(PIVOT ... ON <column> IN ('a', 'b') USING ...), or use GROUP BY with FILTER"
        )
    if len(statements) != 1:
        raise refuse(
            f"exactly one statement is allowed, found {len(statements)}"
            + (" (a second statement after ';' is not allowed)" if len(statements) > 1 else "")
        )
    statement = statements[0]
    kind = statement.type.name
    if kind != "SELECT":
        what = _STATEMENT_NAMES.get(kind, f"a {kind} statement")
        raise refuse(f"only a read-only SELECT (or WITH ... SELECT) query is allowed, not {what}")
    text = statement.query
    if text.strip().rstrip(";").strip() not in sql:
        # DuckDB rewrote the statement into another one (PRAGMA x becomes SELECT * FROM pragma_x)
        raise refuse("PRAGMA statements are not allowed")
    tree = _syntax_tree(text)
    walker = _Walker()
    walker.visit(tree)
    if walker.problem:
        raise refuse(walker.problem)
    data = text.encode("utf-8")
    ends = _token_ends(text)
    spans: list[tuple[int, int, str]] = []
    urls: dict[str, StorageUrl] = {}
    for location, value in sorted(walker.literals):
        if not is_storage_url(value):
            raise refuse(f"{value!r} is not in storage: files are read only as 'storage://<container>/<path>' URLs")
        try:
            parsed = parse_storage_url(value)
        except InvalidInput as exc:
            raise refuse(str(exc)) from None
        end = ends.get(location)
        if end is None or data[location : location + 1] != b"'":
            raise refuse(f"the storage URL {value!r} must be written as a plain string literal")
        spans.append((location, end, parsed.url))
        urls.setdefault(parsed.url, parsed)
    drivers = ", ".join(_quote(d) for d in ST_READ_DRIVERS)
    insertions = tuple((_closing_paren(text, at), f", allowed_drivers = [{drivers}]") for at in walker.st_reads)
    return CheckedQuery(text, tuple(urls.values()), tuple(spans), insertions, walker.spatial)


def _has_keyword(text: str, word: str) -> bool:
    """Whether ``word`` occurs in ``text`` as a keyword token (not in a string, a comment or a quoted name)."""
    data = text.encode("utf-8")
    tokens = duckdb.tokenize(text)
    for i, (start, kind) in enumerate(tokens):
        if kind == duckdb.token_type.keyword:
            stop = tokens[i + 1][0] if i + 1 < len(tokens) else len(data)
            if data[start:stop].strip().decode("utf-8", "replace").lower() == word:
                return True
    return False


def _closing_paren(text: str, location: int) -> int:
    """Byte offset of the ')' that closes the call whose name starts at ``location`` (by DuckDB's tokenizer)."""
    data = text.encode("utf-8")
    tokens = duckdb.tokenize(text)
    depth = 0
    for i, (start, kind) in enumerate(tokens):
        if start < location or kind != duckdb.token_type.operator:
            continue
        stop = tokens[i + 1][0] if i + 1 < len(tokens) else len(data)
        for offset in range(start, stop):
            char = data[offset : offset + 1]
            if char == b"(":
                depth += 1
            elif char == b")":
                depth -= 1
                if depth == 0:
                    return offset
    raise refuse("the ST_Read call has no closing parenthesis")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _syntax_tree(text: str) -> Any:
    with _parser_lock:
        row = _parser().execute("SELECT json_serialize_sql(?)", [text]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True, "error_message": "no result"}
    if tree.get("error"):
        message = str(tree.get("error_message", "it cannot be parsed"))
        if "Only SELECT" in message:
            raise refuse("only a read-only SELECT (or WITH ... SELECT) query is allowed (PRAGMA is not)")
        raise refuse(f"it is not valid SQL: {message}")
    return tree


def _token_ends(text: str) -> dict[int, int]:
    """Byte offset of each string constant token -> byte offset just after its closing quote."""
    data = text.encode("utf-8")
    tokens = duckdb.tokenize(text)
    ends: dict[int, int] = {}
    for i, (start, kind) in enumerate(tokens):
        if kind != duckdb.token_type.string_const:
            continue
        stop = tokens[i + 1][0] if i + 1 < len(tokens) else len(data)
        chunk = data[start:stop].rstrip()
        # the literal ends at its last quote (a comment may follow before the next token)
        end = _literal_end(chunk)
        ends[start] = start + end
    return ends


def _literal_end(chunk: bytes) -> int:
    """Length of the single-quoted literal at the start of ``chunk`` ('' is an escaped quote)."""
    if not chunk.startswith(b"'"):
        return len(chunk)
    i = 1
    while i < len(chunk):
        if chunk[i : i + 1] == b"'":
            if chunk[i + 1 : i + 2] == b"'":
                i += 2
                continue
            return i + 1
        i += 1
    return len(chunk)


class _Walker:
    """Walks json_serialize_sql's tree: table functions, denied functions, file literals, table names in scope."""

    def __init__(self) -> None:
        self.problem: str | None = None
        self.literals: list[tuple[int, str]] = []  # (byte offset, value) of every file argument
        self.spatial = False
        self.st_reads: list[int] = []  # byte offsets of ST_Read calls that get allowed_drivers added

    def visit(self, node: Any) -> None:
        self._visit(node, frozenset())

    def _query_node(self, node: dict[str, Any], scope: frozenset[str]) -> None:
        """A query node (SELECT, set operation, recursive CTE) and its WITH queries, each name in its own scope.

        A CTE's body sees the enclosing scopes and the CTEs before it, not itself nor the ones after it; the
        node's other parts (and every subquery below them) see all of them. Only the recursive part of a
        ``WITH RECURSIVE`` query sees its own name.
        """
        visible = set(scope)
        for entry in node["cte_map"].get("map") or []:
            name = str(entry.get("key", ""))
            problem = _cte_name_problem(name)
            if problem:
                self._fail(problem)
                return
            self._visit(entry.get("value"), frozenset(visible))
            visible.add(name.lower())
        inner = frozenset(visible)
        for key, value in node.items():
            if key == "cte_map":
                continue
            if node.get("type") == "RECURSIVE_CTE_NODE" and key == "right":
                self._visit(value, inner | {str(node.get("cte_name", "")).lower()})
            else:
                self._visit(value, inner)

    def _fail(self, problem: str) -> None:
        if self.problem is None:
            self.problem = problem

    def _visit(self, node: Any, scope: frozenset[str]) -> None:
        if self.problem:
            return
        if isinstance(node, list):
            for value in node:
                self._visit(value, scope)
            return
        if not isinstance(node, dict):
            return
        if isinstance(node.get("cte_map"), dict):
            self._query_node(node, scope)
            return
        kind = node.get("type")
        if kind == "TABLE_FUNCTION" and isinstance(node.get("function"), dict):
            self._table_function(node["function"], scope)
            for key, value in node.items():
                if key != "function":
                    self._visit(value, scope)
            return
        if kind == "BASE_TABLE":
            self._base_table(node, scope)
        if kind == "SHOW_REF" and node.get("table_name"):
            self._fail("SHOW TABLES and other catalog listings are not allowed (DESCRIBE or SUMMARIZE a query instead)")
            return
        if node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            self.spatial = self.spatial or name.startswith("st_")
            if name in DENIED_FUNCTIONS:
                self._fail(f"the function {name}() is not allowed in the sandbox")
                return
            if name in FILE_FUNCTIONS:
                self._fail(f"{name}() reads files and may only be used in FROM, with a storage:// URL")
                return
        for value in node.values():
            self._visit(value, scope)

    def _table_function(self, function: dict[str, Any], scope: frozenset[str]) -> None:
        name = str(function.get("function_name", "")).lower()
        self.spatial = self.spatial or name.startswith("st_")
        schema = str(function.get("schema", "") or "").lower()
        if name.startswith("pragma_"):
            self._fail("PRAGMA statements and pragma_ functions are not allowed")
            return
        if name not in ALLOWED_TABLE_FUNCTIONS or schema not in ("", "main"):
            self._fail(f"the table function {name}() is not allowed in the sandbox (see docs/duckdb.md for the list)")
            return
        children = function.get("children") or []
        positional = [c for c in children if not _is_named_parameter(c)]
        if name in FILE_FUNCTIONS:
            if not positional:
                self._fail(f"{name}() needs a storage:// URL as its first argument")
                return
            for child in positional:
                if not self._file_argument(name, child):
                    return
            for child in children:
                if _is_named_parameter(child):
                    self._named_parameter(name, child, scope)
            if name == "st_read" and not self.problem:
                self.st_reads.append(int(function["query_location"]))
            return
        self._visit(children, scope)

    def _named_parameter(self, function: str, node: dict[str, Any], scope: frozenset[str]) -> None:
        key = str(node["left"]["column_names"][0]).lower()
        value = node.get("right")
        if function == "st_read" and key == "allowed_drivers":
            self._fail("ST_Read's allowed_drivers is set by the sandbox (see docs/duckdb.md for the drivers)")
        elif function == "st_read" and key == "sibling_files":
            self._file_argument(f"{function}(sibling_files)", value)
        elif function == "st_read" and key == "open_options":
            for option in _constant_strings(value):
                if option is None or option.split("=", 1)[0].strip().upper() not in ST_READ_OPEN_OPTIONS:
                    self._fail(f"the ST_Read open option {option!r} is not allowed (see docs/duckdb.md for the list)")
                    return
        else:
            self._visit(value, scope)

    def _file_argument(self, function: str, node: Any) -> bool:
        """Record the storage literals of one file argument; False (and a problem) if it is not literals."""
        if isinstance(node, dict) and node.get("class") == "CONSTANT":
            value = node.get("value") or {}
            if (value.get("type") or {}).get("id") == "VARCHAR" and not value.get("is_null"):
                self.literals.append((int(node["query_location"]), str(value["value"])))
                return True
        if (
            isinstance(node, dict)
            and node.get("class") == "FUNCTION"
            and node.get("function_name") == "list_value"
            and node.get("children")
        ):
            return all(self._file_argument(function, child) for child in node["children"])
        self._fail(
            f"the path of {function}() must be a storage:// URL written as a string literal (or a list of them), "
            "not an expression"
        )
        return False

    def _base_table(self, node: dict[str, Any], scope: frozenset[str]) -> None:
        name = str(node.get("table_name", ""))
        qualified = node.get("schema_name") or node.get("catalog_name")
        if not qualified and name.lower() in scope:
            return
        if is_storage_url(name):
            self.literals.append((int(node["query_location"]), name))
            return
        if any(mark in name for mark in _FILE_LIKE):
            self._fail(f"{name!r} is not in storage: files are read only as 'storage://<container>/<path>' URLs")
            return
        # the sandbox database is empty: any other table is a catalog view of the host's DuckDB
        self._fail(
            f"there is no table {name!r} here: read files as 'storage://<container>/<path>' URLs, "
            "and name only WITH queries in scope"
        )


def _cte_name_problem(name: str) -> str | None:
    """Why a WITH query may not have this name (one that looks like a file or a catalog view), or None."""
    lower = name.lower()
    if any(mark in name for mark in _FILE_LIKE):
        return f"the WITH query name {name!r} looks like a file path: use a plain name"
    if lower.startswith(_CATALOG_PREFIXES) or lower in _catalog_names():
        return f"the WITH query name {name!r} is the name of a DuckDB catalog view: use another name"
    return None


@functools.lru_cache(maxsize=1)
def _catalog_names() -> frozenset[str]:
    """Names of the views and tables a bare table name can reach in a fresh DuckDB (information_schema excluded)."""
    with _parser_lock:
        rows = (
            _parser()
            .execute(
                "SELECT lower(view_name) FROM duckdb_views() WHERE schema_name <> 'information_schema' "
                "UNION SELECT lower(table_name) FROM duckdb_tables()"
            )
            .fetchall()
        )
    return frozenset(str(row[0]) for row in rows)


def _constant_strings(node: Any) -> list[str | None]:
    """The string constants of a constant or a list of constants; None for anything else."""
    if isinstance(node, dict) and node.get("class") == "CONSTANT":
        value = node.get("value") or {}
        is_text = (value.get("type") or {}).get("id") == "VARCHAR" and not value.get("is_null")
        return [str(value["value"]) if is_text else None]
    if isinstance(node, dict) and node.get("class") == "FUNCTION" and node.get("function_name") == "list_value":
        return [text for child in node.get("children") or [] for text in _constant_strings(child)]
    if isinstance(node, dict) and node.get("class") == "CAST":
        return _constant_strings(node.get("child"))
    return [None]


def _is_named_parameter(node: Any) -> bool:
    """``header = true`` inside a table function call is a comparison whose left side is a bare column."""
    return (
        isinstance(node, dict)
        and node.get("class") == "COMPARISON"
        and isinstance(node.get("left"), dict)
        and node["left"].get("class") == "COLUMN_REF"
        and len(node["left"].get("column_names") or []) == 1
    )


# -- the locked connection --------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def extension_path(package: str, name: str) -> str:
    """The .duckdb_extension file shipped in a pip package (duckdb_extension_spatial, ..._azure)."""
    import importlib

    module = importlib.import_module(package)
    base = Path(module.__file__ or "").parent / "extensions"
    found = sorted(base.glob(f"v{duckdb.__version__}/{name}.duckdb_extension")) or sorted(
        base.glob(f"*/{name}.duckdb_extension")
    )
    if not found:
        raise RuntimeError(f"the {name} extension file is missing from the {package} package ({base})")
    return str(found[-1])


@dataclass(frozen=True)
class Limits:
    memory_limit: str = "1GB"
    threads: int = 2
    temp_directory: str | None = None


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(
    mapping: Mapping, limits: Limits, writable: str | None = None, *, spatial: bool = True
) -> duckdb.DuckDBPyConnection:
    """An in-memory connection that can read only ``mapping``'s folders (and write ``writable``), locked.

    ``spatial`` loads the spatial extension (ST_* functions, ST_Read); GEOMETRY itself is a core type.
    """
    config: dict[str, Any] = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "python_enable_replacements": False,  # a bare table name never reaches the caller's Python variables
        "memory_limit": limits.memory_limit,
        "threads": limits.threads,
    }
    if limits.temp_directory:
        config["temp_directory"] = limits.temp_directory
    con = duckdb.connect(":memory:", config=config)
    try:
        con.execute("SET enable_progress_bar = false")
        if spatial:
            con.execute(f"LOAD {_quote(extension_path('duckdb_extension_spatial', 'spatial'))}")
        if mapping.backend == "azure":
            _azure(con, mapping)
        allowed = list(mapping.allowed_directories)
        if writable:
            allowed.append(writable.rstrip("/") + "/")
        con.execute("SET allowed_directories = ?", [allowed])
        con.execute("SET allowed_paths = []")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _azure(con: duckdb.DuckDBPyConnection, mapping: Mapping) -> None:
    con.execute(f"LOAD {_quote(extension_path('duckdb_extension_azure', 'azure'))}")
    access = mapping.azure
    if access is None:
        raise InvalidInput("no Azure Storage credentials for the duckdb azure extension")
    if access.connection_string:
        con.execute(f"CREATE SECRET geoetl_storage (TYPE azure, CONNECTION_STRING {_quote(access.connection_string)})")
        return
    if not access.access_token or not access.account_name:
        raise InvalidInput("the Azure Storage backend gave neither a connection string nor an access token")
    options = [
        "TYPE azure",
        "PROVIDER access_token",
        f"ACCESS_TOKEN {_quote(access.access_token)}",
        f"ACCOUNT_NAME {_quote(access.account_name)}",
    ]
    con.execute(f"CREATE SECRET geoetl_storage ({', '.join(options)})")


@contextlib.contextmanager
def interrupt_after(con: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[threading.Event]:
    """Interrupt whatever ``con`` runs once ``seconds`` have passed; the event tells whether it fired."""
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()
