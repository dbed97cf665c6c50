//! An in-memory fake store for unit tests of the router's own logic (first-hit caching,
//! cross-store scheduling, sagas) without any database service.
//!
//! A [`FakeBackend`] holds rows per logical table (every column, in catalog order) and answers
//! the statements it is sent by evaluating them with `switchyard_core::exec` (single-table
//! SELECTs, INSERT, UPDATE, DELETE). It logs every statement it receives as a [`Call`] (kind,
//! table, the `column IN (...)` lists and `column = value` conjuncts of its WHERE, the rows of
//! an INSERT), and can be told to fail or to answer late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use indexmap::IndexMap;
use switchyard_backend::{Backend, BackendError, Capabilities, Fragment, NativeStatement};
use switchyard_config::Config;
use switchyard_core::exec::eval::{Scope, eval, is_true};
use switchyard_core::exec::{Budget, Layout, finish_select};
use switchyard_core::ir::{BinaryOp, Expr, ExprKind, OnConflict, Statement};
use switchyard_core::{BackendKind, BoundQuery, Catalog, ResultSet, StatementKind, Table, Value};

use crate::Router;

mod cache_tests;
mod join_tests;
mod saga_tests;

/// How a fake fails a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// `BackendError::Unavailable` (connection refused).
    Unavailable,
    /// `BackendError::Rejected` (the store failed the statement).
    Rejected,
}

/// One statement a fake received.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    /// SELECT, INSERT, UPDATE or DELETE.
    pub kind: StatementKind,
    /// The logical tables it names, in order.
    pub tables: Vec<String>,
    /// `column IN (values)` conjuncts of its WHERE: column name and values.
    pub in_lists: Vec<(String, Vec<Value>)>,
    /// `column = value` conjuncts of its WHERE (literal or parameter): column name and value.
    pub equalities: Vec<(String, Value)>,
    /// For an INSERT: the rows offered (every column of the table, in order).
    pub rows: Vec<Vec<Value>>,
}

impl Call {
    /// The first table it names.
    pub fn table(&self) -> &str {
        self.tables.first().map_or("", String::as_str)
    }
}

#[derive(Debug, Default)]
struct State {
    tables: HashMap<String, Vec<Vec<Value>>>,
    calls: Vec<Call>,
    /// Failures by table (`None`: every statement).
    failures: Vec<(Option<String>, Failure)>,
    delay: Option<Duration>,
}

/// An in-memory store; see the module documentation.
#[derive(Debug)]
pub(crate) struct FakeBackend {
    name: String,
    kind: BackendKind,
    caps: Capabilities,
    state: Mutex<State>,
}

/// What a store of each kind declares (the fakes never run local transactions: saga steps
/// run one statement each).
pub(crate) fn capabilities_of(kind: BackendKind) -> Capabilities {
    let sql = kind.is_sql();
    Capabilities {
        full_sql: sql,
        joins: sql,
        aggregates: sql,
        sort_limit: sql,
        needs_key: kind == BackendKind::Redis,
        transactions: false,
        postgres_sql: false,
    }
}

impl FakeBackend {
    pub(crate) fn new(name: &str, kind: BackendKind, caps: Capabilities) -> FakeBackend {
        FakeBackend {
            name: name.to_owned(),
            kind,
            caps,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds rows (every column, in catalog order) to `table`.
    pub(crate) fn put(&self, table: &str, rows: Vec<Vec<Value>>) {
        self.state()
            .tables
            .entry(table.to_owned())
            .or_default()
            .extend(rows);
    }

    /// The rows `table` holds now.
    pub(crate) fn rows(&self, table: &str) -> Vec<Vec<Value>> {
        self.state().tables.get(table).cloned().unwrap_or_default()
    }

    /// Every statement received so far, in order.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The statements received on `table`.
    pub(crate) fn calls_on(&self, table: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.tables.iter().any(|t| t == table))
            .collect()
    }

    /// Forgets the statements received so far.
    pub(crate) fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// Fails every later statement on `table` (`None`: on any table).
    pub(crate) fn fail(&self, table: Option<&str>, failure: Failure) {
        self.state()
            .failures
            .push((table.map(str::to_owned), failure));
    }

    /// Answers every later statement only after `delay`.
    pub(crate) fn delay(&self, delay: Duration) {
        self.state().delay = Some(delay);
    }

    fn error(&self, failure: Failure) -> BackendError {
        match failure {
            Failure::Unavailable => BackendError::Unavailable {
                backend: self.name.clone(),
                source: "connection refused (fake)".into(),
            },
            Failure::Rejected => BackendError::Rejected {
                backend: self.name.clone(),
                message: "the fake was told to fail".to_owned(),
            },
        }
    }

    fn data(&self, e: impl std::fmt::Display) -> BackendError {
        BackendError::Data {
            backend: self.name.clone(),
            message: e.to_string(),
        }
    }

    fn unsupported(&self, what: &str) -> BackendError {
        BackendError::Unsupported {
            backend: self.name.clone(),
            what: what.to_owned(),
        }
    }

    /// Runs `q` against the rows held (the state is locked by the caller).
    fn answer(
        &self,
        state: &mut State,
        q: &BoundQuery,
        catalog: &Catalog,
    ) -> Result<ResultSet, BackendError> {
        let tables = q.statement.tables();
        let Some(table) = tables.first().and_then(|t| catalog.table(t)) else {
            return Err(self.unsupported("a statement over no known table"));
        };
        let rows = state.tables.entry(table.name.clone()).or_default();
        let params = &q.params;
        let matches = |filter: &Option<Expr>, row: &[Value]| -> Result<bool, BackendError> {
            let Some(f) = filter else { return Ok(true) };
            let scope = Scope {
                row,
                offsets: &[0],
                params,
                group: None,
            };
            Ok(is_true(&eval(f, &scope).map_err(|e| self.data(e))?))
        };
        let written = |n: usize| ResultSet {
            columns: Vec::new(),
            rows: Vec::new(),
            rows_affected: Some(n as u64),
        };
        match &q.statement {
            Statement::Select(s) => {
                if s.from.len() != 1 || !s.joins.is_empty() {
                    return Err(self.unsupported("joins"));
                }
                let layout = Layout::of(s, catalog);
                let out = finish_select(s, rows.clone(), &layout, params, &Budget::unlimited())
                    .map_err(|e| self.data(e))?;
                Ok(ResultSet {
                    columns: q.statement.result_columns(),
                    rows: out,
                    rows_affected: None,
                })
            }
            Statement::Insert(ins) => {
                let new = insert_rows(q, table).map_err(|e| self.data(e))?;
                let key = |r: &[Value]| -> Vec<String> {
                    table
                        .primary_key
                        .iter()
                        .map(|&c| format!("{:?}", r.get(c)))
                        .collect()
                };
                let mut kept = Vec::new();
                for r in new {
                    let exists = rows.iter().chain(&kept).any(|o| key(o) == key(&r));
                    match (&ins.on_conflict, exists) {
                        (_, false) => kept.push(r),
                        (Some(OnConflict::DoNothing), true) => {}
                        (Some(OnConflict::DoUpdate(_)), true) => {
                            return Err(self.unsupported("ON CONFLICT DO UPDATE"));
                        }
                        (None, true) => {
                            return Err(BackendError::Constraint {
                                backend: self.name.clone(),
                                message: format!("duplicate key in `{}`", table.name),
                            });
                        }
                    }
                }
                let n = kept.len();
                rows.extend(kept);
                Ok(written(n))
            }
            Statement::Update(u) => {
                let mut n = 0;
                for row in rows.iter_mut() {
                    if !matches(&u.filter, row)? {
                        continue;
                    }
                    let scope = Scope {
                        row,
                        offsets: &[0],
                        params,
                        group: None,
                    };
                    let mut next = row.clone();
                    for a in &u.assignments {
                        let v = eval(&a.value, &scope).map_err(|e| self.data(e))?;
                        if let Some(slot) = next.get_mut(a.column) {
                            *slot = v;
                        }
                    }
                    *row = next;
                    n += 1;
                }
                Ok(written(n))
            }
            Statement::Delete(d) => {
                let before = rows.len();
                let mut keep = Vec::with_capacity(before);
                for row in rows.drain(..) {
                    if !matches(&d.filter, &row)? {
                        keep.push(row);
                    }
                }
                *rows = keep;
                Ok(written(before - rows.len()))
            }
        }
    }
}

/// The rows of an INSERT, every column of `table` in order (NULL where not given).
fn insert_rows(
    q: &BoundQuery,
    table: &Table,
) -> Result<Vec<Vec<Value>>, switchyard_core::CoreError> {
    let Statement::Insert(ins) = &q.statement else {
        return Ok(Vec::new());
    };
    let scope = Scope {
        row: &[],
        offsets: &[],
        params: &q.params,
        group: None,
    };
    ins.rows
        .iter()
        .map(|exprs| {
            let mut row = vec![Value::Null; table.columns.len()];
            for (&c, e) in ins.columns.iter().zip(exprs) {
                if let Some(slot) = row.get_mut(c) {
                    *slot = eval(e, &scope)?;
                }
            }
            Ok(row)
        })
        .collect()
}

/// What the log records of a statement.
fn call_of(q: &BoundQuery, catalog: &Catalog) -> Call {
    let tables: Vec<String> = q
        .statement
        .tables()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let (filter, from): (Option<&Expr>, Vec<&str>) = match &q.statement {
        Statement::Select(s) => (
            s.filter.as_ref(),
            s.from.iter().map(|t| t.table.as_str()).collect(),
        ),
        Statement::Update(u) => (u.filter.as_ref(), vec![u.table.as_str()]),
        Statement::Delete(d) => (d.filter.as_ref(), vec![d.table.as_str()]),
        Statement::Insert(i) => (None, vec![i.table.as_str()]),
    };
    let name = |e: &Expr| -> Option<String> {
        let ExprKind::Column { table, column } = e.kind else {
            return None;
        };
        let t = catalog.table(from.get(table)?)?;
        Some(t.columns.get(column)?.name.clone())
    };
    let value = |e: &Expr| -> Option<Value> {
        match &e.kind {
            ExprKind::Literal(v) => Some(v.clone()),
            ExprKind::Param(i) => q.params.get(*i).cloned(),
            _ => None,
        }
    };
    let mut in_lists = Vec::new();
    let mut equalities = Vec::new();
    for c in filter.map(Expr::conjuncts).unwrap_or_default() {
        match &c.kind {
            ExprKind::InList {
                expr,
                list,
                negated: false,
            } => {
                if let (Some(col), Some(values)) = (
                    name(expr),
                    list.iter().map(value).collect::<Option<Vec<_>>>(),
                ) {
                    in_lists.push((col, values));
                }
            }
            ExprKind::Binary {
                op: BinaryOp::Eq,
                left,
                right,
            } => {
                let pair = name(left)
                    .zip(value(right))
                    .or_else(|| name(right).zip(value(left)));
                if let Some(pair) = pair {
                    equalities.push(pair);
                }
            }
            _ => {}
        }
    }
    let rows = tables
        .first()
        .and_then(|t| catalog.table(t))
        .and_then(|t| insert_rows(q, t).ok())
        .unwrap_or_default();
    Call {
        kind: q.statement.kind(),
        tables,
        in_lists,
        equalities,
        rows,
    }
}

#[async_trait]
impl Backend for FakeBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn explain(&self, fragment: Fragment<'_>) -> Result<NativeStatement, BackendError> {
        Ok(NativeStatement {
            language: "fake",
            text: format!("{:?}", call_of(fragment.query, fragment.catalog)),
            params: fragment.query.params.clone(),
        })
    }

    async fn execute(&self, fragment: Fragment<'_>) -> Result<ResultSet, BackendError> {
        let call = call_of(fragment.query, fragment.catalog);
        let delay = {
            let mut state = self.state();
            state.calls.push(call.clone());
            state.delay
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.state();
        let failure = state.failures.iter().find_map(|(table, f)| {
            table
                .as_ref()
                .is_none_or(|t| call.tables.contains(t))
                .then_some(*f)
        });
        if let Some(f) = failure {
            return Err(self.error(f));
        }
        self.answer(&mut state, fragment.query, fragment.catalog)
    }

    async fn health(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn ensure_table(&self, table: &Table) -> Result<(), BackendError> {
        self.state().tables.entry(table.name.clone()).or_default();
        Ok(())
    }
}

/// The shop of `router.toml` over fakes (`pg`, `mongo`, `redis`, each with the capabilities of
/// its kind), built by `Router::with_backends`.
pub(crate) struct Shop {
    pub router: Router,
    pub pg: Arc<FakeBackend>,
    pub mongo: Arc<FakeBackend>,
    pub redis: Arc<FakeBackend>,
}

impl Shop {
    /// The shop, with `edit` applied to its configuration first.
    pub(crate) fn new(edit: impl FnOnce(&mut Config)) -> Shop {
        let text = include_str!("../../../router.toml");
        let mut config = switchyard_config::parse_str(text, "router.toml", &|_| None)
            .unwrap_or_else(|e| panic!("router.toml: {e}"));
        edit(&mut config);
        let mut fakes: IndexMap<String, Arc<FakeBackend>> = IndexMap::new();
        for (name, b) in &config.backends {
            let fake = FakeBackend::new(name, b.kind, capabilities_of(b.kind));
            fakes.insert(name.clone(), Arc::new(fake));
        }
        let fake = |name: &str| {
            fakes
                .get(name)
                .cloned()
                .unwrap_or_else(|| panic!("router.toml has no backend `{name}`"))
        };
        let (pg, mongo, redis) = (fake("pg"), fake("mongo"), fake("redis"));
        let backends: IndexMap<String, Arc<dyn Backend>> = fakes
            .into_iter()
            .map(|(n, b)| (n, b as Arc<dyn Backend>))
            .collect();
        Shop {
            router: Router::with_backends(config, backends),
            pg,
            mongo,
            redis,
        }
    }

    /// The index of backend `name` in the catalog (route fragments name backends by it).
    pub(crate) fn backend_id(&self, name: &str) -> usize {
        self.router
            .catalog()
            .backends
            .get_index_of(name)
            .unwrap_or_else(|| panic!("no backend `{name}`"))
    }
}

/// `Value::Text`.
pub(crate) fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

/// A row of text values (`None`: NULL), padded with NULLs to `width` columns.
pub(crate) fn row(values: &[Option<&str>], width: usize) -> Vec<Value> {
    let mut r: Vec<Value> = values.iter().map(|v| v.map_or(Value::Null, text)).collect();
    r.resize(width, Value::Null);
    r
}
