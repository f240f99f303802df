"""Settings, read once from environment variables (Azure app settings).

Every field's description is its one-line meaning; ``local.settings.example.json``
is generated from these classes (``python -m devstack settings-example``) and a
test keeps the two in step. PostgreSQL settings use the libpq names.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True, env_ignore_empty=True)


class DatabaseSettings(_Settings):
    """PostgreSQL connection (libpq names) and pool."""

    pghost: str | None = Field(
        None, description="PostgreSQL host of an existing server; empty = the private cluster on 127.0.0.1 (local)"
    )
    pgport: int = Field(54329, description="PostgreSQL port (also the private cluster's port)")
    pg_direct_port: int | None = Field(
        None,
        description="Port for schema changes (migrations, pgstac) when PGPORT is PgBouncer's "
        "(Azure: 5432 direct, 6432 PgBouncer); empty = PGPORT",
    )
    pgdatabase: str = Field("geoetl", description="PostgreSQL database")
    pguser: str = Field("geoetl", description="PostgreSQL user (the Entra ID principal name with PG_AUTH_MODE=entra)")
    pgpassword: SecretStr | None = Field(None, description="PostgreSQL password (unused with PG_AUTH_MODE=entra)")
    pgsslmode: str = Field("prefer", description="libpq sslmode; use 'require' for Azure Flexible Server")
    pg_auth_mode: Literal["password", "entra"] = Field(
        "password", description="'password' (PGPASSWORD or trust) or 'entra' (an azure-identity token as the password)"
    )
    pg_entra_scope: str = Field(
        "https://ossrdbms-aad.database.windows.net/.default",
        description="OAuth scope requested for Entra ID database tokens",
    )
    pg_pool_min_size: int = Field(1, ge=0, description="Connections the pool keeps open")
    pg_pool_max_size: int = Field(10, ge=1, description="Most connections the pool opens")
    pg_connect_timeout: float = Field(5.0, gt=0, description="Seconds to wait for a connection before failing")
    pg_prepared_statements: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Server-side prepared statements: 'auto' = on for the private cluster, off for an existing "
        "server (PgBouncer in transaction mode before 1.21 cannot keep them)",
    )
    pg_statement_timeout_ms: int = Field(
        60000, ge=0, description="Statement timeout set per transaction (SET LOCAL), 0 = none"
    )

    @property
    def embedded(self) -> bool:
        """No PGHOST: the project's own private cluster, which make run / make test start."""
        return self.pghost is None

    @property
    def direct(self) -> bool:
        """PGPORT reaches PostgreSQL itself (no PG_DIRECT_PORT apart from it means no PgBouncer in between)."""
        return self.pg_direct_port is None or self.pg_direct_port == self.pgport

    @property
    def prepared_statements(self) -> bool:
        return self.pg_prepared_statements == "on" or (self.pg_prepared_statements == "auto" and self.embedded)

    @property
    def host(self) -> str:
        return self.pghost or "127.0.0.1"

    def for_schema_changes(self) -> DatabaseSettings:
        """The same server reached directly (never through PgBouncer), for DDL and session-level tools."""
        if self.pg_direct_port is None or self.pg_direct_port == self.pgport:
            return self
        return self.model_copy(update={"pgport": self.pg_direct_port})

    def conninfo_kwargs(self) -> dict[str, object]:
        """Keyword arguments for psycopg.connect (the password is added by the caller)."""
        return {
            "host": self.host,
            "port": self.pgport,
            "dbname": self.pgdatabase,
            "user": self.pguser,
            "sslmode": self.pgsslmode,
            "connect_timeout": max(1, int(self.pg_connect_timeout)),
            "application_name": "geoetl",
            # notice a dead peer (e.g. a silently dropped idle connection) in about a minute, not hours
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }


class StorageSettings(_Settings):
    """Blob storage backend and container names."""

    storage_backend: Literal["local", "azure"] = Field(
        "local", description="'local' filesystem or 'azure' Blob Storage"
    )
    storage_local_root: Path = Field(
        PROJECT_ROOT / ".local" / "storage", description="Root folder of the local backend: <root>/<container>/<blob>"
    )
    azure_storage_connection_string: SecretStr | None = Field(
        None, description="Azure Storage connection string (Azurite or an account); wins over the account name"
    )
    azure_storage_account_name: str | None = Field(
        None, description="Storage account name, used with managed identity when there is no connection string"
    )
    azure_storage_account_url: str | None = Field(
        None, description="Blob endpoint URL; default https://<account>.blob.core.windows.net"
    )
    azure_storage_max_retries: int = Field(3, ge=0, description="Retries of a failed Azure Storage request")
    azure_storage_timeout_seconds: float = Field(
        20.0, gt=0, description="Seconds to wait for an Azure Storage connection or read before failing"
    )
    storage_container_bronze: str = Field("bronze", description="Container for raw inputs")
    storage_container_silver: str = Field("silver", description="Container for processed outputs")
    storage_container_gold: str = Field("gold", description="Container for published outputs")

    @field_validator("storage_local_root")
    @classmethod
    def _anchor_relative_root(cls, value: Path) -> Path:
        """A relative root is relative to the project folder, not to the current directory."""
        return value if value.is_absolute() else PROJECT_ROOT / value

    @property
    def containers(self) -> tuple[str, str, str]:
        return (self.storage_container_bronze, self.storage_container_silver, self.storage_container_gold)


class QueueSettings(_Settings):
    """Queue transport for job and task messages."""

    queue_backend: Literal["postgres", "servicebus"] = Field(
        "postgres", description="'postgres' (queue table in the database) or 'servicebus'"
    )
    jobs_queue_name: str = Field("geospatial-jobs", description="Queue for job messages")
    tasks_queue_name: str = Field("geospatial-tasks", description="Queue for task messages")
    servicebus_connection: SecretStr | None = Field(
        None,
        validation_alias="ServiceBusConnection",
        description="Service Bus connection string (the trigger's 'connection' setting)",
    )
    servicebus_namespace: str | None = Field(
        None,
        validation_alias="ServiceBusConnection__fullyQualifiedNamespace",
        description="Service Bus namespace (<name>.servicebus.windows.net) for managed identity",
    )
    queue_visibility_timeout_seconds: float = Field(
        600.0,
        gt=0,
        description="postgres queue: seconds a received message stays invisible before it is delivered again",
    )
    queue_max_deliveries: int = Field(
        10, ge=1, description="postgres queue: deliveries of one message before it is dead-lettered"
    )
    queue_poll_interval_ms: int = Field(
        200, ge=1, description="postgres queue: longest pause between polls of an idle queue (milliseconds)"
    )
    queue_listen: bool = Field(
        True,
        description="postgres queue: wake idle workers of every process at once with LISTEN/NOTIFY (a direct "
        "connection on PG_DIRECT_PORT); false: polling only",
    )


class OrchestrationSettings(_Settings):
    """The CoreMachine: retries, leases, planning and the janitor."""

    task_max_retries: int = Field(
        3, ge=0, description="Retries of a task after a retryable error (attempts = 1 + this)"
    )
    task_retry_base_seconds: float = Field(
        5.0, ge=0, description="Backoff before the first retry; doubles for each further retry (5, 10, 20 s)"
    )
    task_retry_max_seconds: float = Field(300.0, ge=0, description="Longest backoff between two attempts")
    task_lease_seconds: float = Field(
        300.0,
        gt=0,
        description="A running task's lease; heartbeats renew it every third of it, the janitor "
        "re-drives a task whose lease expired",
    )
    janitor_schedule: str = Field("0 */1 * * * *", description="NCRONTAB schedule of the janitor timer (every minute)")
    janitor_stale_seconds: float = Field(
        120.0, ge=0, description="Age after which the janitor re-sends the message of a queued task or a waiting job"
    )
    plan_batch_size: int = Field(
        1000, ge=1, description="Tasks inserted and enqueued per batch when a stage is planned"
    )
    result_inline_max_bytes: int = Field(
        262144, ge=1024, description="Task results larger than this are stored as blobs (claim check)"
    )
    results_container: str = Field("silver", description="Container for task results too large for the database")


class AppSettings(_Settings):
    """Behaviour of the app itself."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the geoetl loggers: DEBUG, INFO, WARNING or ERROR"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _python_level(cls, value: object) -> object:
        """Also the names Azure uses (Information, Trace, Critical...)."""
        if not isinstance(value, str):
            return value
        upper = value.strip().upper()
        return {"INFORMATION": "INFO", "TRACE": "DEBUG", "CRITICAL": "ERROR", "NONE": "ERROR"}.get(upper, upper)

    enable_admin_endpoints: bool = Field(
        False, description="Serve destructive ADMIN endpoints (schema redeploy); off unless set"
    )
    managed_identity_client_id: str | None = Field(
        None, description="Client id of a user-assigned managed identity (empty: system-assigned / default chain)"
    )
    health_probe_container: str = Field("silver", description="Container the health check writes a probe blob to")
    health_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Longest the health check waits for the database, and for storage, before reporting it down",
    )


class RasterSettings(_Settings):
    """The raster pipeline (process_raster) and the STAC endpoints."""

    raster_temp_dir: Path | None = Field(
        None, description="Folder for COGs being written before upload; empty = the system temp folder"
    )
    raster_max_pixels: int = Field(
        2_000_000_000, ge=1, description="Largest raster (width x height) process_raster accepts"
    )
    raster_max_source_bytes: int = Field(
        4 * 1024**3,
        ge=1,
        description="Largest raster (uncompressed bytes) process_raster accepts: one tier task must finish "
        "within the function timeout",
    )
    raster_in_memory_max_mb: int = Field(
        64,
        ge=0,
        description="Rasters up to this size (uncompressed MB) are converted in memory; larger ones through a "
        "temp file (several tasks share a worker's memory)",
    )
    raster_temp_max_age_hours: float = Field(
        6, gt=0, description="raster-* temp folders older than this (left by killed workers) are removed"
    )
    raster_cog_blocksize: int = Field(512, ge=64, le=4096, description="Tile size of the COGs process_raster writes")
    raster_gdal_threads: str = Field(
        "ALL_CPUS", description="GDAL_NUM_THREADS while writing COGs (a number or ALL_CPUS)"
    )
    raster_price_per_gb_hot: float = Field(
        0.0184, ge=0, description="Monthly price per GiB in the Hot access tier (visualization and analysis COGs)"
    )
    raster_price_per_gb_cool: float = Field(
        0.01, ge=0, description="Monthly price per GiB in the Cool access tier (archive COGs)"
    )
    raster_price_currency: str = Field("USD", description="Currency of the per-GiB prices")
    stac_search_default_limit: int = Field(10, ge=1, le=10_000, description="Items per STAC search page by default")
    stac_search_max_limit: int = Field(1000, ge=1, le=10_000, description="Most items one STAC search page returns")
    stac_search_job_max_items: int = Field(
        1_000_000, ge=1, description="Most items one stac_search job collects (its max_items is capped by this)"
    )
    stac_search_inline_features: int = Field(
        100, ge=0, le=10_000, description="stac_search results up to this many items stay in the job result"
    )


class VectorSettings(_Settings):
    """The vector pipeline (ingest_vector)."""

    vector_chunk_rows_min: int = Field(
        5_000, ge=1, description="Fewest rows per GeoParquet chunk when ingest_vector chooses the chunk size"
    )
    vector_chunk_rows_max: int = Field(
        100_000, ge=1, description="Most rows per GeoParquet chunk when ingest_vector chooses the chunk size"
    )
    vector_chunk_target_count: int = Field(
        8, ge=1, description="Chunks ingest_vector aims at per file (each a parallel load task), within min..max rows"
    )
    vector_work_container: str = Field(
        "silver", description="Container of ingest_vector's intermediate chunks (under tmp/ingest_vector/<job_id>/)"
    )
    vector_temp_dir: Path | None = Field(
        None, description="Folder for downloaded vector files while they are read; empty = the system temp folder"
    )
    vector_load_timeout_ms: int = Field(
        900_000, ge=0, description="Statement timeout of one chunk COPY and of the finalize DDL (0 = none)"
    )
    vector_unlogged_load: bool = Field(
        False,
        description="Load chunks into an UNLOGGED staging table, made LOGGED (crash-safe) before the swap",
    )
    vector_zip_max_bytes: int = Field(
        20_000_000_000, ge=1, description="Most bytes the members of a zip/KMZ input may hold uncompressed, in all"
    )
    vector_zip_max_ratio: int = Field(
        1000, ge=1, description="Highest compression ratio of a zip/KMZ member (uncompressed / compressed size)"
    )
    vector_zip_max_members: int = Field(10_000, ge=1, description="Most members (files) a zip/KMZ input may hold")


class AnalyticsSettings(_Settings):
    """Container inventories, H3 grids and the DuckDB sandbox."""

    inventory_page_size: int = Field(
        5000, ge=1, le=5000, description="Blobs per listing page for container jobs and GET /api/containers (max)"
    )
    inventory_pages_per_task: int = Field(
        1, ge=1, le=1000, description="Listing pages each metadata/summary task of a container job handles"
    )
    inventory_work_container: str = Field(
        "silver", description="Container for the container jobs' intermediate page files"
    )
    h3_max_cells: int = Field(
        2_000_000, ge=1, description="Most cells generate_h3_grid may produce; larger requests are refused at submit"
    )
    h3_cells_per_task: int = Field(
        20_000, ge=100, description="Target cells per task of generate_h3_grid (the fan-out splits by parent cell)"
    )
    duckdb_memory_limit: str = Field(
        "1GB", pattern=r"^\d+(\.\d+)?\s*(B|KB|MB|GB|KiB|MiB|GiB)$", description="DuckDB memory_limit of a query"
    )
    duckdb_threads: int = Field(2, ge=1, le=64, description="DuckDB threads of a query")
    duckdb_timeout_seconds: float = Field(
        300.0, gt=0, description="A duckdb_query running longer than this is interrupted and fails"
    )
    duckdb_max_rows_inline: int = Field(
        1000, ge=1, description="Most rows a duckdb_query returns inline (output_format json); more: use parquet"
    )
    duckdb_max_inline_bytes: int = Field(
        262144, ge=1024, description="Most bytes of JSON rows a duckdb_query returns inline"
    )
    duckdb_row_limit_cap: int = Field(
        10_000_000, ge=1, description="Most rows a duckdb_query writes to storage (row_limit may only lower it)"
    )
    duckdb_temp_dir: Path | None = Field(
        None, description="Folder for DuckDB spill files and staged outputs; empty = the system temp folder"
    )


class LocalHostSettings(_Settings):
    """The local host that serves function_app.py without Azure Functions."""

    local_host_bind: str = Field("127.0.0.1", description="Address the local host listens on")
    local_host_port: int = Field(7071, description="Port the local host listens on (as 'func start')")
    local_host_master_key: SecretStr | None = Field(
        None, description="Master (admin) key; when any key is set, keys are enforced as in Azure"
    )
    local_host_function_keys: str = Field("", description="Comma-separated function keys accepted by FUNCTION routes")
    local_host_workers: int = Field(0, ge=0, description="Concurrent queue workers per queue (0 = CPU count)")
    local_host_prefetch: int = Field(
        4,
        ge=1,
        le=100,
        description="Messages a queue worker takes at once; those not started within a second go back to the queue",
    )
    local_host_timers: bool = Field(True, description="Fire timer-triggered functions on their schedule")


class StackSettings(_Settings):
    """The embedded local stack (make run / make test); unused in Azure."""

    local_stack_dir: Path = Field(
        PROJECT_ROOT / ".local", description="Folder of the private PostgreSQL cluster (<dir>/postgres) and Azurite"
    )
    pg_bindir: Path | None = Field(
        None, description="Folder with initdb and pg_ctl; empty = search /usr/lib/postgresql/*/bin and pg_config"
    )

    @field_validator("local_stack_dir")
    @classmethod
    def _anchor_relative_dir(cls, value: Path) -> Path:
        return value if value.is_absolute() else PROJECT_ROOT / value


class Settings:
    """All settings, built once at the edge and passed down."""

    def __init__(
        self,
        database: DatabaseSettings | None = None,
        storage: StorageSettings | None = None,
        queue: QueueSettings | None = None,
        orchestration: OrchestrationSettings | None = None,
        app: AppSettings | None = None,
        local_host: LocalHostSettings | None = None,
        stack: StackSettings | None = None,
        raster: RasterSettings | None = None,
        vector: VectorSettings | None = None,
        analytics: AnalyticsSettings | None = None,
    ) -> None:
        self.database = database or DatabaseSettings()
        self.storage = storage or StorageSettings()
        self.queue = queue or QueueSettings()
        self.orchestration = orchestration or OrchestrationSettings()
        self.app = app or AppSettings()
        self.local_host = local_host or LocalHostSettings()
        self.stack = stack or StackSettings()
        self.raster = raster or RasterSettings()
        self.vector = vector or VectorSettings()
        self.analytics = analytics or AnalyticsSettings()


SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    DatabaseSettings,
    StorageSettings,
    QueueSettings,
    OrchestrationSettings,
    AppSettings,
    LocalHostSettings,
    StackSettings,
    RasterSettings,
    VectorSettings,
    AnalyticsSettings,
)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
