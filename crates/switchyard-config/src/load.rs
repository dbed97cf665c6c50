//! Reading `router.toml`: parse with spans, interpolate, deserialize each entry on its own so one
//! mistake does not hide the next, validate cross references, and point every problem at its line.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::interpolate::interpolate;
use crate::model::{BackendConfig, BackendKind, Config, Role, ServerConfig, TableConfig, defaults};

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key path, e.g. `tables.orders.placements[0].backend`.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}")]
    Read {
        /// The path that was tried.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but has one or more problems; all of them are listed.
    #[error("{}", render_problems(file, problems))]
    Invalid {
        /// The file name used in messages.
        file: String,
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

fn render_problems(file: &str, problems: &[Problem]) -> String {
    let mut out = format!(
        "{file} has {} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str(&format!("\n  {file}:{}:{}: {p}", p.line, p.column));
    }
    out
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Reads and validates the configuration at `path`, interpolating from the process environment.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_str(&text, &path.display().to_string(), &|name| {
        std::env::var(name).ok()
    })
}

/// Parses and validates configuration `text`; `file` names it in messages, `env` resolves `${VAR}`.
pub fn parse_str(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let invalid = |problems: Vec<Problem>| ConfigError::Invalid {
        file: file.to_owned(),
        problems,
    };
    let mut doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(err) => {
            let span = err.span().unwrap_or(0..0);
            return Err(invalid(vec![problem_at(
                text,
                span,
                String::new(),
                err.message(),
            )]));
        }
    };
    let mut loader = Loader {
        text,
        problems: Vec::new(),
    };
    loader.interpolate_table(doc.get_mut(), &mut Vec::new(), env);

    let mut config = Config::default();
    for (key, value) in doc.get_ref().iter() {
        match key.get_ref().as_ref() {
            "server" => {
                if let Some(server) = loader.entry::<ServerConfig>(value, &[Seg::key("server")]) {
                    config.server = server;
                }
            }
            "backends" => {
                for (name, entry) in loader.sub_table(value, "backends") {
                    let path = [Seg::key("backends"), Seg::key(&name)];
                    if let Some(b) = loader.entry::<BackendConfig>(entry, &path) {
                        config.backends.insert(name, b);
                    }
                }
            }
            "plugins" => {
                if let Some(p) =
                    loader.entry::<crate::model::PluginsConfig>(value, &[Seg::key("plugins")])
                {
                    config.plugins = p;
                }
            }
            "execution" => {
                if let Some(e) =
                    loader.entry::<crate::model::ExecutionConfig>(value, &[Seg::key("execution")])
                {
                    config.execution = e;
                }
            }
            "transactions" => {
                if let Some(t) = loader
                    .entry::<crate::model::TransactionsConfig>(value, &[Seg::key("transactions")])
                {
                    config.transactions = t;
                }
            }
            "events" => {
                if let Some(e) =
                    loader.entry::<crate::model::EventsConfig>(value, &[Seg::key("events")])
                {
                    config.events = e;
                }
            }
            "admin" => {
                if let Some(a) =
                    loader.entry::<crate::model::AdminConfig>(value, &[Seg::key("admin")])
                {
                    config.admin = a;
                }
            }
            "tables" => {
                for (name, entry) in loader.sub_table(value, "tables") {
                    let path = [Seg::key("tables"), Seg::key(&name)];
                    if let Some(t) = loader.entry::<TableConfig>(entry, &path) {
                        config.tables.insert(name, t);
                    }
                }
            }
            other => loader.problems.push(problem_at(
                text,
                key.span(),
                other.to_owned(),
                "unknown section, expected one of: server, backends, tables, plugins, admin, execution, transactions, events",
            )),
        }
    }
    for (path, message) in validate(&config) {
        let span = span_of(doc.get_ref(), &path);
        loader
            .problems
            .push(problem_at(text, span, render_path(&path), &message));
    }
    if loader.problems.is_empty() {
        Ok(config)
    } else {
        loader.problems.sort_by_key(|p| (p.line, p.column));
        loader.problems.dedup();
        Err(invalid(loader.problems))
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

impl Seg {
    fn key(k: &str) -> Self {
        Self::Key(k.to_owned())
    }
}

fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

struct Loader<'t> {
    text: &'t str,
    problems: Vec<Problem>,
}

impl Loader<'_> {
    fn interpolate_table(
        &mut self,
        table: &mut DeTable<'_>,
        path: &mut Vec<Seg>,
        env: &dyn Fn(&str) -> Option<String>,
    ) {
        for (key, value) in table.iter_mut() {
            path.push(Seg::Key(key.get_ref().to_string()));
            self.interpolate_value(value, path, env);
            path.pop();
        }
    }

    fn interpolate_value(
        &mut self,
        value: &mut Spanned<DeValue<'_>>,
        path: &mut Vec<Seg>,
        env: &dyn Fn(&str) -> Option<String>,
    ) {
        let span = value.span();
        match value.get_mut() {
            DeValue::String(s) => match interpolate(s, env) {
                Ok(new) => *s = new.into(),
                Err(message) => {
                    let problem = problem_at(self.text, span, render_path(path), &message);
                    self.problems.push(problem);
                }
            },
            DeValue::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(Seg::Index(i));
                    self.interpolate_value(item, path, env);
                    path.pop();
                }
            }
            DeValue::Table(t) => self.interpolate_table(t, path, env),
            _ => {}
        }
    }

    /// The entries of a `[name.*]` section, or a problem if it is not a table.
    fn sub_table<'v, 'i>(
        &mut self,
        value: &'v Spanned<DeValue<'i>>,
        name: &str,
    ) -> Vec<(String, &'v Spanned<DeValue<'i>>)> {
        match value.get_ref() {
            DeValue::Table(t) => t
                .iter()
                .map(|(k, v)| (k.get_ref().to_string(), v))
                .collect(),
            _ => {
                let p = problem_at(self.text, value.span(), name.to_owned(), "expected a table");
                self.problems.push(p);
                Vec::new()
            }
        }
    }

    fn entry<T: DeserializeOwned>(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        path: &[Seg],
    ) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(err) => {
                let span = err.span().unwrap_or_else(|| value.span());
                let key = match value.get_ref() {
                    DeValue::Table(t) => {
                        let mut inner = path.to_vec();
                        inner.extend(path_at(t, span.start));
                        render_path(&inner)
                    }
                    _ => render_path(path),
                };
                self.problems
                    .push(problem_at(self.text, span, key, err.message()));
                None
            }
        }
    }
}

fn problem_at(text: &str, span: Range<usize>, key: String, message: &str) -> Problem {
    let offset = span.start.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Problem {
        line,
        column,
        key,
        message: message.trim().to_owned(),
    }
}

/// The span of the deepest existing node along `path`.
fn span_of(root: &DeTable<'_>, path: &[Seg]) -> Range<usize> {
    let mut best = 0..0;
    let mut table = Some(root);
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    for seg in path {
        let next = match (seg, table, array) {
            (Seg::Key(k), Some(t), _) => t.get(k.as_str()),
            (Seg::Index(i), _, Some(a)) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        best = next.span();
        table = None;
        array = None;
        match next.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(&a[..]),
            _ => {}
        }
    }
    best
}

/// The key path, inside `table`, of the deepest node whose key or value contains `offset`.
fn path_at(table: &DeTable<'_>, offset: usize) -> Vec<Seg> {
    for (k, v) in table.iter() {
        if k.span().contains(&offset) || v.span().contains(&offset) {
            let mut path = vec![Seg::Key(k.get_ref().to_string())];
            path.extend(value_path_at(v, offset));
            return path;
        }
    }
    Vec::new()
}

fn value_path_at(value: &Spanned<DeValue<'_>>, offset: usize) -> Vec<Seg> {
    match value.get_ref() {
        DeValue::Table(t) => path_at(t, offset),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if item.span().contains(&offset) {
                    let mut path = vec![Seg::Index(i)];
                    path.extend(value_path_at(item, offset));
                    return path;
                }
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// Cross-reference checks on a deserialized configuration.
fn validate(config: &Config) -> Vec<(Vec<Seg>, String)> {
    let mut out = Vec::new();
    let k = Seg::key;
    if config
        .server
        .listen
        .parse::<std::net::SocketAddr>()
        .is_err()
    {
        out.push((
            vec![k("server"), k("listen")],
            format!(
                "`{}` is not a socket address, expected host:port such as 127.0.0.1:7878",
                config.server.listen
            ),
        ));
    }
    if config.execution.semi_join_batch_size == 0 {
        out.push((
            vec![k("execution"), k("semi_join_batch_size")],
            "must be at least 1".to_owned(),
        ));
    }
    if !(1..=defaults::MAX_EXPR_DEPTH_LIMIT).contains(&config.execution.max_expr_depth) {
        out.push((
            vec![k("execution"), k("max_expr_depth")],
            format!("must be between 1 and {}", defaults::MAX_EXPR_DEPTH_LIMIT),
        ));
    }
    for (field, value) in [
        ("max_query_rows", config.execution.max_query_rows),
        ("max_query_bytes", config.execution.max_query_bytes),
    ] {
        if value == 0 {
            out.push((
                vec![k("execution"), k(field)],
                "must be at least 1".to_owned(),
            ));
        }
    }
    if let Some(log) = &config.transactions.log_backend {
        match config.backends.get(log) {
            None => out.push((
                vec![k("transactions"), k("log_backend")],
                format!("no backend `{log}` in [backends]"),
            )),
            Some(b) if !b.kind.is_sql() => out.push((
                vec![k("transactions"), k("log_backend")],
                format!(
                    "backend `{log}` is {}; the saga log needs a SQL backend (postgres, mysql, sqlite)",
                    b.kind.as_str()
                ),
            )),
            Some(_) => {}
        }
    }
    if config.transactions.lease_ms <= config.server.query_timeout_ms {
        out.push((
            vec![k("transactions"), k("lease_ms")],
            format!(
                "must exceed server.query_timeout_ms ({} ms): a saga step may run that long",
                config.server.query_timeout_ms
            ),
        ));
    }
    if let Some(events) = &config.events.backend {
        match config.backends.get(events) {
            None => out.push((
                vec![k("events"), k("backend")],
                format!("no backend `{events}` in [backends]"),
            )),
            Some(b) if b.kind != BackendKind::Redis => out.push((
                vec![k("events"), k("backend")],
                format!(
                    "backend `{events}` is {}; change events need a redis backend",
                    b.kind.as_str()
                ),
            )),
            Some(_) => {}
        }
    }
    for (name, b) in &config.backends {
        let at = |field: &str| vec![k("backends"), k(name), k(field)];
        let schemes: &[&str] = match b.kind {
            BackendKind::Postgres => &["postgres://", "postgresql://"],
            BackendKind::Mysql => &["mysql://", "mariadb://"],
            BackendKind::Sqlite => &["sqlite:"],
            BackendKind::Mongodb => &["mongodb://", "mongodb+srv://"],
            BackendKind::Redis => &["redis://", "rediss://", "unix://"],
        };
        if !schemes.iter().any(|s| b.url.starts_with(s)) {
            out.push((
                at("url"),
                format!(
                    "a {} url must start with {}",
                    b.kind.as_str(),
                    schemes.join(" or ")
                ),
            ));
        }
        if b.pool_max_connections == 0 {
            out.push((at("pool_max_connections"), "must be at least 1".to_owned()));
        }
        if b.key_prefix.is_some() && b.kind != BackendKind::Redis {
            out.push((
                at("key_prefix"),
                "applies only to redis backends".to_owned(),
            ));
        }
        if b.schema.is_some() && b.kind != BackendKind::Postgres {
            out.push((at("schema"), "applies only to postgres backends".to_owned()));
        }
    }
    let plugins = &config.plugins;
    let module_names = || join_keys(plugins.modules.keys());
    if let Some(active) = &plugins.active
        && !plugins.modules.contains_key(active)
    {
        out.push((
            vec![k("plugins"), k("active")],
            format!(
                "unknown module `{active}`, expected one of: {}",
                module_names()
            ),
        ));
    }
    for (tenant, module) in &plugins.tenants {
        if !plugins.modules.contains_key(module) {
            out.push((
                vec![k("plugins"), k("tenants"), k(tenant)],
                format!(
                    "unknown module `{module}`, expected one of: {}",
                    module_names()
                ),
            ));
        }
    }
    if plugins.call_timeout_ms == 0 {
        out.push((
            vec![k("plugins"), k("call_timeout_ms")],
            "must be at least 1".to_owned(),
        ));
    }
    if plugins.max_memory_bytes < 1 << 20 {
        out.push((
            vec![k("plugins"), k("max_memory_bytes")],
            "must be at least 1048576 (1 MiB)".to_owned(),
        ));
    }
    for (tname, t) in &config.tables {
        let at = |rest: &[Seg]| {
            let mut p = vec![k("tables"), k(tname)];
            p.extend_from_slice(rest);
            p
        };
        if t.columns.is_empty() {
            out.push((
                at(&[k("columns")]),
                "a table needs at least one column".to_owned(),
            ));
        }
        if t.primary_key.is_empty() {
            out.push((
                at(&[k("primary_key")]),
                "a table needs a primary key".to_owned(),
            ));
        }
        for (i, col) in t.primary_key.iter().enumerate() {
            if !t.columns.contains_key(col) {
                out.push((
                    at(&[k("primary_key"), Seg::Index(i)]),
                    format!(
                        "unknown column `{col}`, expected one of: {}",
                        join_keys(t.columns.keys())
                    ),
                ));
            }
        }
        if t.placements.is_empty() {
            out.push((
                at(&[k("placements")]),
                "a table needs at least one placement".to_owned(),
            ));
        }
        let primaries = t
            .placements
            .iter()
            .filter(|p| p.role == Role::Primary)
            .count();
        let shards = t
            .placements
            .iter()
            .filter(|p| p.role == Role::Shard)
            .count();
        if !t.placements.is_empty() && primaries + shards == 0 {
            out.push((
                at(&[k("placements")]),
                "a table needs one placement with role `primary` (or shards)".to_owned(),
            ));
        }
        if primaries > 1 {
            out.push((
                at(&[k("placements")]),
                "at most one placement may be `primary`".to_owned(),
            ));
        }
        match (&t.shard_key, shards) {
            (None, n) if n > 0 => out.push((
                at(&[k("shard_key")]),
                "a sharded table needs `shard_key`".to_owned(),
            )),
            (Some(_), 0) => out.push((
                at(&[k("shard_key")]),
                "applies only to tables with `shard` placements".to_owned(),
            )),
            (Some(key), _) if !t.columns.contains_key(key) => out.push((
                at(&[k("shard_key")]),
                format!(
                    "unknown column `{key}`, expected one of: {}",
                    join_keys(t.columns.keys())
                ),
            )),
            _ => {}
        }
        if primaries == 1 && shards > 0 {
            out.push((
                at(&[k("placements")]),
                "a table has either a primary or shards, not both".to_owned(),
            ));
        }
        for (i, p) in t.placements.iter().enumerate() {
            let pat = |f: &str| at(&[k("placements"), Seg::Index(i), k(f)]);
            let backend = config.backends.get(&p.backend);
            match backend {
                None => out.push((
                    pat("backend"),
                    format!(
                        "unknown backend `{}`, expected one of: {}",
                        p.backend,
                        join_keys(config.backends.keys())
                    ),
                )),
                Some(b) => {
                    let redis = b.kind == BackendKind::Redis;
                    if !redis && p.key_pattern.is_some() {
                        out.push((
                            pat("key_pattern"),
                            "applies only to redis backends".to_owned(),
                        ));
                    }
                    if !redis && p.scan == crate::model::ScanPolicy::Allow {
                        out.push((pat("scan"), "applies only to redis backends".to_owned()));
                    }
                    if !redis && p.mode.is_some() {
                        out.push((pat("mode"), "applies only to redis backends".to_owned()));
                    }
                }
            }
            for logical in p.columns.keys() {
                if !t.columns.contains_key(logical) {
                    out.push((
                        at(&[k("placements"), Seg::Index(i), k("columns"), k(logical)]),
                        format!(
                            "unknown column `{logical}` in rename, expected one of: {}",
                            join_keys(t.columns.keys())
                        ),
                    ));
                }
            }
            if let Some(pattern) = &p.key_pattern {
                for var in pattern_vars(pattern) {
                    if !t.columns.contains_key(var) {
                        out.push((
                            pat("key_pattern"),
                            format!("`{{{var}}}` names no column of the table"),
                        ));
                    }
                }
            }
        }
    }
    out
}

fn join_keys<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = keys.map(String::as_str).collect();
    if names.is_empty() {
        "(none declared)".to_owned()
    } else {
        names.join(", ")
    }
}

fn pattern_vars(pattern: &str) -> impl Iterator<Item = &str> {
    pattern
        .split('{')
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(v, _)| v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PG_URL").then(|| "postgres://u@h/db".to_owned())
    }

    fn problems(text: &str) -> String {
        match parse_str(text, "router.toml", &env) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        }
    }

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9000"

[backends.pg]
kind = "postgres"
url = "${PG_URL}"
schema = "shop"

[tables.customers]
columns = { customer_id = "text", name = "text", spend = "decimal(12,2)" }
primary_key = ["customer_id"]
placements = [{ backend = "pg", role = "primary", name = "clients" }]
"#;

    #[test]
    fn good_config_loads_with_interpolation_and_order() {
        let c = parse_str(GOOD, "router.toml", &env).expect("valid");
        assert_eq!(c.backends["pg"].url, "postgres://u@h/db");
        let cols: Vec<&String> = c.tables["customers"].columns.keys().collect();
        assert_eq!(cols, ["customer_id", "name", "spend"]);
        assert_eq!(
            c.tables["customers"].placements[0].physical_name("customers"),
            "clients"
        );
        assert_eq!(c.server.query_timeout_ms, crate::defaults::QUERY_TIMEOUT_MS);
    }

    #[test]
    fn every_problem_is_reported_with_line_and_key() {
        let text = r#"
[server]
listen = "nowhere"

[backends.pg]
kind = "postgres"
urll = "x"

[backends.my]
kind = "mysql"
url = "${NOPE}"
schema = "s"

[tables.t]
columns = { id = "int", v = "varchar" }
primary_key = ["id"]
placements = [{ backend = "pg" }]

[tables.u]
columns = { id = "int" }
primary_key = ["nope"]
placements = [{ backend = "missing", key_pattern = "u:{id}" }]

[extra]
"#;
        insta::assert_snapshot!(problems(text), @r"
        router.toml has 9 problems
          router.toml:3:10: server.listen: `nowhere` is not a socket address, expected host:port such as 127.0.0.1:7878
          router.toml:7:1: backends.pg.urll: unknown field `urll`, expected one of `kind`, `url`, `pool_max_connections`, `connect_timeout_ms`, `statement_timeout_ms`, `schema`, `key_prefix`, `circuit_failures`, `circuit_open_ms`, `stream_stall_timeout_ms`
          router.toml:11:7: backends.my.url: environment variable `NOPE` is not set and `${NOPE}` has no default (write `${NOPE:-default}`)
          router.toml:11:7: backends.my.url: a mysql url must start with mysql:// or mariadb://
          router.toml:12:10: backends.my.schema: applies only to postgres backends
          router.toml:15:29: tables.t.columns.v: unknown column type `varchar`, expected one of: int, float, decimal, decimal(P,S), text, bool, timestamp, date, json
          router.toml:21:16: tables.u.primary_key[0]: unknown column `nope`, expected one of: id
          router.toml:22:27: tables.u.placements[0].backend: unknown backend `missing`, expected one of: my
          router.toml:24:2: extra: unknown section, expected one of: server, backends, tables, plugins, admin, execution, transactions, events
        ");
    }

    #[test]
    fn transactions_and_events_name_fitting_backends() {
        let text = format!(
            "{GOOD}\n[backends.cache]\nkind = \"redis\"\nurl = \"redis://h\"\n\n\
             [transactions]\nlog_backend = \"cache\"\nlease_ms = 10\n\n\
             [events]\nbackend = \"pg\"\n"
        );
        insta::assert_snapshot!(problems(&text), @r"
        router.toml has 3 problems
          router.toml:20:15: transactions.log_backend: backend `cache` is redis; the saga log needs a SQL backend (postgres, mysql, sqlite)
          router.toml:21:12: transactions.lease_ms: must exceed server.query_timeout_ms (30000 ms): a saga step may run that long
          router.toml:24:11: events.backend: backend `pg` is postgres; change events need a redis backend
        ");
        let ok = format!(
            "{GOOD}\n[backends.cache]\nkind = \"redis\"\nurl = \"redis://h\"\n\n\
             [transactions]\nlog_backend = \"pg\"\n\n[events]\nbackend = \"cache\"\n"
        );
        assert_eq!(problems(&ok), "ok");
    }

    #[test]
    fn the_shipped_router_toml_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../router.toml");
        let text = std::fs::read_to_string(path).expect("router.toml");
        let c = parse_str(&text, "router.toml", &|_| None).expect("valid");
        assert_eq!(c.tables.len(), 9);
        assert!(c.backends.contains_key("pg"));
    }

    #[test]
    fn syntax_errors_point_at_the_line() {
        let out = problems("[server]\nlisten = \n");
        assert!(out.contains("router.toml:2:"), "{out}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let out =
            problems("[backends.pg]\nkind = \"postgres\"\nurl = \"postgres://x\"\npool = 3\n");
        assert!(
            out.contains("router.toml:4:1: backends.pg.pool: unknown field `pool`"),
            "{out}"
        );
    }
}
