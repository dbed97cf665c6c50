//! The catalog: logical tables with typed columns, their placements on backends, and the backends.

use indexmap::IndexMap;
use switchyard_config::{BackendKind, Config, LogicalType, RedisMode, Role};

/// Everything the planner knows about tables and backends.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Logical tables by name, in configuration order.
    pub tables: IndexMap<String, Table>,
    /// Backends by name, in configuration order.
    pub backends: IndexMap<String, BackendInfo>,
    /// How deep bound expressions may nest (`execution.max_expr_depth`).
    pub max_expr_depth: usize,
}

impl Default for Catalog {
    /// No tables, no backends, the default `execution.max_expr_depth`.
    fn default() -> Self {
        Self {
            tables: IndexMap::new(),
            backends: IndexMap::new(),
            max_expr_depth: switchyard_config::defaults::MAX_EXPR_DEPTH as usize,
        }
    }
}

/// A backend as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// Name from `[backends.NAME]`.
    pub name: String,
    /// Kind of store.
    pub kind: BackendKind,
}

/// One logical table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Logical name.
    pub name: String,
    /// Columns in declaration order.
    pub columns: Vec<Column>,
    /// Indices into `columns` of the primary key.
    pub primary_key: Vec<usize>,
    /// Where its rows live.
    pub placements: Vec<Placement>,
    /// For sharded tables, the column whose hash picks the shard.
    pub shard_key: Option<usize>,
}

/// One column of a logical table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Logical name.
    pub name: String,
    /// Logical type.
    pub ty: LogicalType,
}

/// One placement of a table on a backend, with its physical names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Backend name.
    pub backend: String,
    /// Role of this copy.
    pub role: Role,
    /// Physical table or collection name.
    pub physical_name: String,
    /// Physical column name (or field path) for each logical column, by column index.
    pub physical_columns: Vec<String>,
    /// Redis key pattern.
    pub key_pattern: Option<String>,
    /// Redis layout.
    pub mode: Option<RedisMode>,
    /// Entry time to live in seconds.
    pub ttl_seconds: Option<u64>,
    /// Most rows a keyspace scan may return; `None`: reads need the key.
    pub scan_max_rows: Option<u64>,
}

impl Catalog {
    /// Builds the catalog from a validated configuration.
    pub fn from_config(config: &Config) -> Catalog {
        let backends = config
            .backends
            .iter()
            .map(|(name, b)| {
                (
                    name.clone(),
                    BackendInfo {
                        name: name.clone(),
                        kind: b.kind,
                    },
                )
            })
            .collect();
        let tables = config
            .tables
            .iter()
            .map(|(name, t)| {
                let columns: Vec<Column> = t
                    .columns
                    .iter()
                    .map(|(n, ty)| Column {
                        name: n.clone(),
                        ty: *ty,
                    })
                    .collect();
                let primary_key = t
                    .primary_key
                    .iter()
                    .filter_map(|k| columns.iter().position(|c| &c.name == k))
                    .collect();
                let placements = t
                    .placements
                    .iter()
                    .map(|p| Placement {
                        backend: p.backend.clone(),
                        role: p.role,
                        physical_name: p.physical_name(name).to_owned(),
                        physical_columns: columns
                            .iter()
                            .map(|c| {
                                p.columns
                                    .get(&c.name)
                                    .cloned()
                                    .unwrap_or_else(|| c.name.clone())
                            })
                            .collect(),
                        key_pattern: p.key_pattern.clone(),
                        mode: p.mode,
                        ttl_seconds: p.ttl_seconds,
                        scan_max_rows: (p.scan == switchyard_config::ScanPolicy::Allow)
                            .then_some(p.scan_max_rows),
                    })
                    .collect();
                let shard_key = t
                    .shard_key
                    .as_ref()
                    .and_then(|k| columns.iter().position(|c| &c.name == k));
                let table = Table {
                    name: name.clone(),
                    columns,
                    primary_key,
                    placements,
                    shard_key,
                };
                (name.clone(), table)
            })
            .collect();
        Catalog {
            tables,
            backends,
            max_expr_depth: config.execution.max_expr_depth as usize,
        }
    }

    /// The table called `name`.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }
}

impl Table {
    /// Index of the column called `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The placement of this table on `backend`, if any.
    pub fn placement_on(&self, backend: &str) -> Option<&Placement> {
        self.placements.iter().find(|p| p.backend == backend)
    }

    /// The shard placements in shard order.
    pub fn shards(&self) -> impl Iterator<Item = &Placement> {
        self.placements.iter().filter(|p| p.role == Role::Shard)
    }

    /// The primary placement, if the table has one (sharded tables do not).
    pub fn primary(&self) -> Option<&Placement> {
        self.placements.iter().find(|p| p.role == Role::Primary)
    }
}
