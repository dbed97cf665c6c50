//! The configuration types, one per section of `router.toml`. Defaults live in [`defaults`].

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::LogicalType;

/// Every default value of the configuration, in one place.
pub mod defaults {
    /// `server.listen`.
    pub const LISTEN: &str = "127.0.0.1:7878";
    /// `server.max_body_bytes`: 1 MiB.
    pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
    /// `server.query_timeout_ms`.
    pub const QUERY_TIMEOUT_MS: u64 = 30_000;
    /// `server.slow_query_ms`.
    pub const SLOW_QUERY_MS: u64 = 1_000;
    /// `backends.*.pool_max_connections`.
    pub const POOL_MAX_CONNECTIONS: u32 = 10;
    /// `backends.*.connect_timeout_ms`.
    pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
    /// `backends.*.circuit_failures`.
    pub const CIRCUIT_FAILURES: u32 = 5;
    /// `backends.*.circuit_open_ms`.
    pub const CIRCUIT_OPEN_MS: u64 = 5_000;
    /// `backends.*.stream_stall_timeout_ms`.
    pub const STREAM_STALL_TIMEOUT_MS: u64 = 5_000;

    /// `plugins.call_timeout_ms`.
    pub const PLUGIN_CALL_TIMEOUT_MS: u64 = 5;
    /// `plugins.max_memory_bytes`: 16 MiB.
    pub const PLUGIN_MAX_MEMORY_BYTES: u64 = 16 * 1024 * 1024;
    /// `plugins.watch_interval_ms`.
    pub const PLUGIN_WATCH_INTERVAL_MS: u64 = 250;
    /// `plugins.tenant_context_key`.
    pub const TENANT_CONTEXT_KEY: &str = "tenant";

    pub(crate) fn plugin_call_timeout_ms() -> u64 {
        PLUGIN_CALL_TIMEOUT_MS
    }
    pub(crate) fn plugin_max_memory_bytes() -> u64 {
        PLUGIN_MAX_MEMORY_BYTES
    }
    pub(crate) fn plugin_watch_interval_ms() -> u64 {
        PLUGIN_WATCH_INTERVAL_MS
    }
    pub(crate) fn tenant_context_key() -> String {
        TENANT_CONTEXT_KEY.to_owned()
    }
    /// `placements[].scan_max_rows`.
    pub const SCAN_MAX_ROWS: u64 = 10_000;
    /// `execution.max_query_rows`.
    pub const MAX_QUERY_ROWS: u64 = 1_000_000;
    /// `execution.max_query_bytes`: 256 MiB.
    pub const MAX_QUERY_BYTES: u64 = 256 * 1024 * 1024;
    /// `execution.semi_join_max_keys`.
    pub const SEMI_JOIN_MAX_KEYS: u64 = 1_000;
    /// `execution.semi_join_batch_size`.
    pub const SEMI_JOIN_BATCH_SIZE: u64 = 1_000;
    /// `execution.max_expr_depth`.
    pub const MAX_EXPR_DEPTH: u32 = 256;
    /// The largest `execution.max_expr_depth` accepted: deeper expressions would not fit the
    /// stacks of the passes that recurse over them.
    pub const MAX_EXPR_DEPTH_LIMIT: u32 = 1_000;

    /// `transactions.log_table`.
    pub const SAGA_LOG_TABLE: &str = "switchyard_sagas";
    /// `transactions.lease_ms`.
    pub const SAGA_LEASE_MS: u64 = 60_000;
    /// `transactions.recovery_interval_ms`.
    pub const SAGA_RECOVERY_INTERVAL_MS: u64 = 5_000;
    /// `events.stream`.
    pub const EVENTS_STREAM: &str = "switchyard:changes";
    /// `events.max_len`.
    pub const EVENTS_MAX_LEN: u64 = 100_000;
    /// `events.publish_wait_ms`.
    pub const EVENTS_PUBLISH_WAIT_MS: u64 = 100;
    /// `events.queue_capacity`.
    pub const EVENTS_QUEUE_CAPACITY: u64 = 10_000;
    /// `execution.cache_timeout_ms`.
    pub const CACHE_TIMEOUT_MS: u64 = 250;

    pub(crate) fn saga_log_table() -> String {
        SAGA_LOG_TABLE.to_owned()
    }
    pub(crate) fn saga_lease_ms() -> u64 {
        SAGA_LEASE_MS
    }
    pub(crate) fn saga_recovery_interval_ms() -> u64 {
        SAGA_RECOVERY_INTERVAL_MS
    }
    pub(crate) fn events_stream() -> String {
        EVENTS_STREAM.to_owned()
    }
    pub(crate) fn events_max_len() -> u64 {
        EVENTS_MAX_LEN
    }

    pub(crate) fn events_publish_wait_ms() -> u64 {
        EVENTS_PUBLISH_WAIT_MS
    }

    pub(crate) fn events_queue_capacity() -> u64 {
        EVENTS_QUEUE_CAPACITY
    }

    pub(crate) fn cache_timeout_ms() -> u64 {
        CACHE_TIMEOUT_MS
    }

    pub(crate) fn max_query_rows() -> u64 {
        MAX_QUERY_ROWS
    }
    pub(crate) fn max_query_bytes() -> u64 {
        MAX_QUERY_BYTES
    }
    pub(crate) fn semi_join_max_keys() -> u64 {
        SEMI_JOIN_MAX_KEYS
    }
    pub(crate) fn semi_join_batch_size() -> u64 {
        SEMI_JOIN_BATCH_SIZE
    }

    pub(crate) fn max_expr_depth() -> u32 {
        MAX_EXPR_DEPTH
    }

    pub(crate) fn scan_max_rows() -> u64 {
        SCAN_MAX_ROWS
    }
    pub(crate) fn yes() -> bool {
        true
    }

    pub(crate) fn listen() -> String {
        LISTEN.to_owned()
    }
    pub(crate) fn max_body_bytes() -> u64 {
        MAX_BODY_BYTES
    }
    pub(crate) fn query_timeout_ms() -> u64 {
        QUERY_TIMEOUT_MS
    }
    pub(crate) fn slow_query_ms() -> u64 {
        SLOW_QUERY_MS
    }
    pub(crate) fn circuit_failures() -> u32 {
        CIRCUIT_FAILURES
    }

    pub(crate) fn circuit_open_ms() -> u64 {
        CIRCUIT_OPEN_MS
    }

    pub(crate) fn stream_stall_timeout_ms() -> u64 {
        STREAM_STALL_TIMEOUT_MS
    }

    pub(crate) fn pool_max_connections() -> u32 {
        POOL_MAX_CONNECTIONS
    }
    pub(crate) fn connect_timeout_ms() -> u64 {
        CONNECT_TIMEOUT_MS
    }
}

/// The whole of `router.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP endpoint.
    #[serde(default)]
    pub server: ServerConfig,
    /// The stores the router talks to, by name.
    #[serde(default)]
    pub backends: IndexMap<String, BackendConfig>,
    /// The logical tables applications query, by name.
    #[serde(default)]
    pub tables: IndexMap<String, TableConfig>,
    /// WebAssembly placement plugins.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// The admin endpoints (`/admin/...`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// How the router executes routes that span several fragments.
    #[serde(default)]
    pub execution: ExecutionConfig,
    /// Multi-statement transactions (`POST /v1/transaction`): where the saga log lives.
    #[serde(default)]
    pub transactions: TransactionsConfig,
    /// Change events published after committed writes.
    #[serde(default)]
    pub events: EventsConfig,
}

/// `[transactions]`: the durable saga log of `POST /v1/transaction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionsConfig {
    /// The SQL backend (postgres, mysql, sqlite) that holds the saga log. Several routers that
    /// name the same store share it (recovery, idempotency keys). Default: the first SQL backend
    /// in `[backends]`; without one, transactions are refused.
    #[serde(default)]
    pub log_backend: Option<String>,
    /// Physical name of the saga log table (created when missing).
    #[serde(default = "defaults::saga_log_table")]
    pub log_table: String,
    /// How long a router owns a running saga without writing to its log; past it, any router's
    /// recovery may finish it (compensate). Must exceed `server.query_timeout_ms`.
    #[serde(default = "defaults::saga_lease_ms")]
    pub lease_ms: u64,
    /// How often unfinished sagas whose lease expired are looked for (also once at start).
    /// 0: only at start.
    #[serde(default = "defaults::saga_recovery_interval_ms")]
    pub recovery_interval_ms: u64,
}

impl Default for TransactionsConfig {
    fn default() -> Self {
        Self {
            log_backend: None,
            log_table: defaults::SAGA_LOG_TABLE.to_owned(),
            lease_ms: defaults::SAGA_LEASE_MS,
            recovery_interval_ms: defaults::SAGA_RECOVERY_INTERVAL_MS,
        }
    }
}

/// `[events]`: change events (table, key, operation, version) appended to a Redis stream after
/// every committed write, so other services can follow changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// The Redis backend that holds the stream. Unset: no events.
    #[serde(default)]
    pub backend: Option<String>,
    /// Stream key.
    #[serde(default = "defaults::events_stream")]
    pub stream: String,
    /// Approximate cap on the stream's length (`XADD ... MAXLEN ~`).
    #[serde(default = "defaults::events_max_len")]
    pub max_len: u64,
    /// The events of a `/v1/query` write are queued and published in order by one task; the
    /// write's answer waits at most this long (ms) for them to be published, so a stream that
    /// hangs delays answers by this much, no more. (Transactions publish theirs before they
    /// commit, as their outbox requires.)
    #[serde(default = "defaults::events_publish_wait_ms")]
    pub publish_wait_ms: u64,
    /// Writes whose events wait to be published; past it their events are dropped (counted in
    /// `switchyard_events_published_total{outcome="dropped"}`).
    #[serde(default = "defaults::events_queue_capacity")]
    pub queue_capacity: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            backend: None,
            stream: defaults::EVENTS_STREAM.to_owned(),
            max_len: defaults::EVENTS_MAX_LEN,
            publish_wait_ms: defaults::EVENTS_PUBLISH_WAIT_MS,
            queue_capacity: defaults::EVENTS_QUEUE_CAPACITY,
        }
    }
}

/// `[execution]`: limits and strategies of cross-store execution in the router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionConfig {
    /// Rows one query may hold in the router at once (fragment answers, join and aggregate
    /// state); past it the query fails with `QUERY_TOO_LARGE`.
    #[serde(default = "defaults::max_query_rows")]
    pub max_query_rows: u64,
    /// Bytes (estimated) one query may hold in the router at once; past it `QUERY_TOO_LARGE`.
    #[serde(default = "defaults::max_query_bytes")]
    pub max_query_bytes: u64,
    /// Semi-join reduction: when one side of a cross-store join has at most this many distinct
    /// join keys, they are pushed into the other side's fragment (IN list / `$in` / key lookups)
    /// instead of reading it whole. 0 turns the reduction off.
    #[serde(default = "defaults::semi_join_max_keys")]
    pub semi_join_max_keys: u64,
    /// Keys per pushed IN list (per statement sent to the big side).
    #[serde(default = "defaults::semi_join_batch_size")]
    pub semi_join_batch_size: u64,
    /// How deep expressions may nest (`1 + 1 + ...` is one level per `+`; a chain of one
    /// `AND`/`OR` counts `log2` of its length); deeper statements are refused with
    /// `QUERY_TOO_LARGE` before anything runs. At most 1000.
    #[serde(default = "defaults::max_expr_depth")]
    pub max_expr_depth: u32,
    /// How long a read or fill of a cache placement may take on a query's path (ms); a cache
    /// that does not answer in time is skipped (reads go to the source of truth, fills are
    /// dropped). Invalidations after a write wait this long too; one that does not finish is
    /// logged and counted, and the entry lives until its TTL.
    #[serde(default = "defaults::cache_timeout_ms")]
    pub cache_timeout_ms: u64,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self {
            max_query_rows: defaults::MAX_QUERY_ROWS,
            max_query_bytes: defaults::MAX_QUERY_BYTES,
            semi_join_max_keys: defaults::SEMI_JOIN_MAX_KEYS,
            semi_join_batch_size: defaults::SEMI_JOIN_BATCH_SIZE,
            max_expr_depth: defaults::MAX_EXPR_DEPTH,
            cache_timeout_ms: defaults::CACHE_TIMEOUT_MS,
        }
    }
}

/// `[plugins]`: WebAssembly placement plugins and which one serves which request.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Module that routes requests no tenant rule matches; none: the built-in default planner.
    #[serde(default)]
    pub active: Option<String>,
    /// Plugin modules by name.
    #[serde(default)]
    pub modules: IndexMap<String, PluginModuleConfig>,
    /// Per-tenant modules: `context[tenant_context_key]` value -> module name.
    #[serde(default)]
    pub tenants: IndexMap<String, String>,
    /// The request context key that selects a tenant's module.
    #[serde(default = "defaults::tenant_context_key")]
    pub tenant_context_key: String,
    /// What a plugin failure (trap, timeout, memory, invalid route) does to the query.
    #[serde(default)]
    pub on_error: OnPluginError,
    /// Deadline of one plugin call, in milliseconds.
    #[serde(default = "defaults::plugin_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Memory cap of a plugin instance, in bytes.
    #[serde(default = "defaults::plugin_max_memory_bytes")]
    pub max_memory_bytes: u64,
    /// Reload a module when its file changes.
    #[serde(default = "defaults::yes")]
    pub watch: bool,
    /// How often plugin files are checked for changes, in milliseconds.
    #[serde(default = "defaults::plugin_watch_interval_ms")]
    pub watch_interval_ms: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            active: None,
            modules: IndexMap::new(),
            tenants: IndexMap::new(),
            tenant_context_key: defaults::tenant_context_key(),
            on_error: OnPluginError::default(),
            call_timeout_ms: defaults::PLUGIN_CALL_TIMEOUT_MS,
            max_memory_bytes: defaults::PLUGIN_MAX_MEMORY_BYTES,
            watch: true,
            watch_interval_ms: defaults::PLUGIN_WATCH_INTERVAL_MS,
        }
    }
}

/// `[plugins.modules.NAME]`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginModuleConfig {
    /// The `.wasm` component; relative paths start at the configuration file's directory.
    pub path: String,
}

/// What a plugin failure does to the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnPluginError {
    /// Fail the query with the plugin's error code.
    #[default]
    Fail,
    /// Run the query on the default route instead (and count it).
    Fallback,
}

/// `[admin]`: who may call `/admin/...`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Accept admin calls from other hosts than loopback.
    #[serde(default)]
    pub allow_remote: bool,
    /// Name of an environment variable holding a bearer token admin calls must present; while
    /// it is unset or empty, admin calls are refused.
    #[serde(default)]
    pub token_env: Option<String>,
}

/// `[server]`: the HTTP endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the query endpoint listens on (`host:port`). `serve --listen` overrides it.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// Largest request body accepted, in bytes; larger bodies get `PAYLOAD_TOO_LARGE`.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: u64,
    /// Time a whole query may take, in milliseconds; past it the client gets `TIMEOUT`.
    #[serde(default = "defaults::query_timeout_ms")]
    pub query_timeout_ms: u64,
    /// Statements slower than this, in milliseconds, are logged at WARN with their route and
    /// timings (never parameter values); 0 turns the slow-query log off.
    #[serde(default = "defaults::slow_query_ms")]
    pub slow_query_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            max_body_bytes: defaults::MAX_BODY_BYTES,
            query_timeout_ms: defaults::QUERY_TIMEOUT_MS,
            slow_query_ms: defaults::SLOW_QUERY_MS,
        }
    }
}

/// The kind of store behind a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// PostgreSQL (url `postgres://...`).
    Postgres,
    /// MySQL or MariaDB (url `mysql://...`).
    Mysql,
    /// SQLite file (url `sqlite://path/to/file.db` or `sqlite::memory:`).
    Sqlite,
    /// MongoDB (url `mongodb://...`).
    Mongodb,
    /// Redis (url `redis://...`).
    Redis,
}

impl BackendKind {
    /// The lowercase name used in the configuration and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Sqlite => "sqlite",
            Self::Mongodb => "mongodb",
            Self::Redis => "redis",
        }
    }

    /// Whether the store speaks SQL (PostgreSQL, MySQL, SQLite).
    pub fn is_sql(self) -> bool {
        matches!(self, Self::Postgres | Self::Mysql | Self::Sqlite)
    }
}

/// `[backends.NAME]`: one store.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Which kind of store this is.
    pub kind: BackendKind,
    /// Connection URL; `${VAR}` and `${VAR:-default}` are taken from the environment.
    pub url: String,
    /// Largest number of pooled connections.
    #[serde(default = "defaults::pool_max_connections")]
    pub pool_max_connections: u32,
    /// Time to establish a connection, in milliseconds; past it the backend is unavailable.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Time one statement may run on this backend, in milliseconds; defaults to
    /// `server.query_timeout_ms`.
    #[serde(default)]
    pub statement_timeout_ms: Option<u64>,
    /// PostgreSQL only: the schema that holds this backend's tables (its `search_path`).
    #[serde(default)]
    pub schema: Option<String>,
    /// Redis only: a prefix put before every key (several routers or tenants on one Redis).
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Circuit breaking: after this many statements in a row could not reach the backend, the
    /// circuit opens and statements for it fail at once with `BACKEND_UNAVAILABLE` and a
    /// `retry_after_ms`; 0 never opens it.
    #[serde(default = "defaults::circuit_failures")]
    pub circuit_failures: u32,
    /// How long an open circuit fails statements fast, in milliseconds, before one probe
    /// statement is let through (it closes the circuit when it reaches the backend).
    #[serde(default = "defaults::circuit_open_ms")]
    pub circuit_open_ms: u64,
    /// A streamed answer whose client reads nothing for this long (with two batches of rows
    /// waiting for it) is abandoned: the statement is cancelled, its connection goes back to
    /// the pool and the answer ends with a `TIMEOUT` error. In milliseconds.
    #[serde(default = "defaults::stream_stall_timeout_ms")]
    pub stream_stall_timeout_ms: u64,
}

/// `[tables.NAME]`: one logical table.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Free text for people reading the catalog.
    #[serde(default)]
    pub description: Option<String>,
    /// Columns in order, `name = "type"`.
    pub columns: IndexMap<String, LogicalType>,
    /// Primary key column names (one or more).
    pub primary_key: Vec<String>,
    /// Where the rows live: one `primary` (or several `shard`s), plus replicas and caches.
    pub placements: Vec<PlacementConfig>,
    /// For sharded tables: the column whose hash picks the shard (shard `i` is the `i`-th
    /// placement with role `shard`).
    #[serde(default)]
    pub shard_key: Option<String>,
}

/// The role a placement plays for its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The source of truth: receives writes, serves reads by default.
    #[default]
    Primary,
    /// A read-only copy maintained outside the router.
    Replica,
    /// A cache in front of the primary (cache-aside).
    Cache,
    /// One shard of a table split across backends.
    Shard,
}

impl Role {
    /// The lowercase name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
            Self::Cache => "cache",
            Self::Shard => "shard",
        }
    }
}

/// How a Redis placement lays rows out in keys (used by the Redis backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RedisMode {
    /// One hash per row; fields are columns.
    Hash,
    /// One hash per partition key; one field per clustering key.
    HashPerPartition,
    /// The row as one JSON string per key.
    Json,
    /// One integer counter per key.
    Counter,
}

/// One placement of a table on a backend, with its physical mapping.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementConfig {
    /// Name of a `[backends.NAME]` entry.
    pub backend: String,
    /// What this placement is for.
    #[serde(default)]
    pub role: Role,
    /// Physical table or collection name; defaults to the logical table name.
    #[serde(default)]
    pub name: Option<String>,
    /// Column renames, `logical = "physical"`; a MongoDB field may be a dotted path.
    #[serde(default)]
    pub columns: IndexMap<String, String>,
    /// Redis only: key pattern over primary-key columns, e.g. `customer:{customer_id}`.
    #[serde(default)]
    pub key_pattern: Option<String>,
    /// Redis only: how rows are laid out in keys.
    #[serde(default)]
    pub mode: Option<RedisMode>,
    /// Time to live of entries written to this placement, in seconds (caches, sessions).
    /// Not enforced by SQLite placements.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Redis only: whether reads without the key may scan the keyspace (`SCAN`), bounded by
    /// `scan_max_rows`; by default they are refused with `NEEDS_KEY`.
    #[serde(default)]
    pub scan: ScanPolicy,
    /// Redis only: the most rows a scan may return before the query fails with `QUERY_TOO_LARGE`.
    #[serde(default = "defaults::scan_max_rows")]
    pub scan_max_rows: u64,
}

/// Whether a key-value placement may be read without its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScanPolicy {
    /// Reads must give the key.
    #[default]
    Deny,
    /// Reads without the key scan the keyspace, up to `scan_max_rows` rows.
    Allow,
}

impl PlacementConfig {
    /// The physical table/collection name of `table` in this placement.
    pub fn physical_name<'a>(&'a self, table: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(table)
    }
}

impl Config {
    /// The same catalog with every backend swapped for an embedded SQLite file of the same name
    /// under `data_dir` (`serve --embedded`). Redis-only placement settings are dropped; TTLs are
    /// kept in the catalog but SQLite does not enforce them.
    pub fn into_embedded(mut self, data_dir: &std::path::Path) -> Config {
        for (name, backend) in &mut self.backends {
            backend.kind = BackendKind::Sqlite;
            backend.url = format!(
                "sqlite://{}?mode=rwc",
                data_dir.join(format!("{name}.db")).display()
            );
            backend.schema = None;
        }
        for table in self.tables.values_mut() {
            for p in &mut table.placements {
                p.key_pattern = None;
                p.mode = None;
            }
        }
        // Every store is SQLite now: there is no Redis stream for change events.
        self.events.backend = None;
        self
    }
}
