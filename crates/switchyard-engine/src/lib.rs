//! The router-side SQL engine: Apache DataFusion plans and computes the SELECTs the fast path
//! (the bound IR in `switchyard-core`) does not handle — subqueries, CTEs, `CASE`, casts,
//! dates, window functions, set operations, every join form.
//!
//! The engine never reads a store. [`Engine::plan`] parses (PostgreSQL dialect), plans and
//! optimizes a statement against the catalog's logical tables and answers the table scans it
//! needs ([`Scan`]: one logical table, the columns, the filters DataFusion could push, as a
//! single-table SELECT the fast path runs). The router runs each scan through its own routing
//! (placement plugin, caches, replicas, shards) and hands the rows back to
//! [`Planned::execute`], which computes the rest under the engine's memory budget.
//!
//! Invariant: the only crate that knows DataFusion and Arrow; every failure is an
//! [`EngineError`] with a client code.

mod convert;
mod error;
mod names;
mod pgtime;
mod provider;
mod pushdown;
mod semantics;
mod whole;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, TableProvider};
use datafusion::common::config::Dialect;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use futures::StreamExt;
use futures::stream::BoxStream;
use switchyard_core::value::Value;
use switchyard_core::{Catalog, LogicalType, ResultColumn};

pub use error::EngineError;
use provider::{FetchedTable, LogicalSchema, LogicalTable};
pub use whole::PhysicalTable;

/// Bounds of the engine's work per statement.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    /// Memory the operators of one statement may hold (joins, sorts, aggregation); past it the
    /// statement fails with `QUERY_TOO_LARGE`.
    pub memory_bytes: usize,
    /// Rows per batch inside the engine.
    pub batch_size: usize,
}

/// The engine for one catalog.
pub struct Engine {
    ctx: SessionContext,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("tables", &self.catalog.tables.len())
            .finish()
    }
}

/// How deep DataFusion's parser may nest (statements the fast path already checked for depth
/// reach it; this bounds the rest).
const PARSER_RECURSION_LIMIT: usize = 64;

impl Engine {
    /// An engine over `catalog`'s logical tables.
    pub fn new(catalog: Arc<Catalog>, limits: EngineLimits) -> Result<Self, EngineError> {
        let mut config = SessionConfig::new()
            .with_batch_size(limits.batch_size.max(1))
            .with_target_partitions(1)
            .with_information_schema(false);
        {
            let options = config.options_mut();
            options.sql_parser.dialect = Dialect::PostgreSQL;
            options.sql_parser.map_string_types_to_utf8view = false;
            // `533.42` is an exact numeric in PostgreSQL, not a float.
            options.sql_parser.parse_float_as_decimal = true;
            options.execution.time_zone = Some(convert::UTC.to_owned());
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes.max(1 << 20), 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()?;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        // `->`, `->>`, `#>>` and the json_* functions over `json` columns (JSON text).
        datafusion_functions_json::register_all(&mut state)?;
        // PostgreSQL's `age`, which DataFusion lacks.
        datafusion::execution::FunctionRegistry::register_udf(
            &mut state,
            Arc::new(datafusion::logical_expr::ScalarUDF::new_from_impl(
                pgtime::Age::new(),
            )),
        )?;
        let ctx = SessionContext::new_with_state(state);
        let tables = MemoryCatalogProvider::new();
        tables.register_schema("public", Arc::new(LogicalSchema::new(catalog.clone())))?;
        ctx.register_catalog("datafusion", Arc::new(tables));
        Ok(Self { ctx, catalog })
    }

    /// Plans `sql` (one SELECT, `$n` parameters from `params`) and names the scans it needs.
    pub async fn plan(
        &self,
        sql: &str,
        params: &[serde_json::Value],
    ) -> Result<Planned, EngineError> {
        let state = self.ctx.state();
        let dialect = PostgreSqlDialect {};
        let mut statements = DFParserBuilder::new(sql)
            .with_dialect(&dialect)
            .with_recursion_limit(PARSER_RECURSION_LIMIT)
            .build()?
            .parse_statements()?;
        if statements.len() != 1 {
            return Err(EngineError::NotAQuery(
                "exactly one statement per request".to_owned(),
            ));
        }
        let Some(DFStatement::Statement(statement)) = statements.pop_front() else {
            return Err(EngineError::NotAQuery(
                "only SELECT statements run in the router's engine".to_owned(),
            ));
        };
        let ast::Statement::Query(query) = statement.as_ref() else {
            return Err(EngineError::NotAQuery(
                "only SELECT statements run in the router's engine".to_owned(),
            ));
        };
        let names = names::select_names(query);
        let original = statement.as_ref().clone();
        let mut statement = statement;
        semantics::postgres_functions(&mut statement).map_err(EngineError::Unsupported)?;
        let mut retry = statement.clone();
        let plan = match state
            .statement_to_plan(DFStatement::Statement(statement))
            .await
        {
            // PostgreSQL answers several columns of the same name; DataFusion wants unique
            // ones: name the computed columns apart (the answer keeps PostgreSQL's names).
            Err(e) if e.to_string().contains("require unique expression names") => {
                names::alias_computed_columns(&mut retry);
                state
                    .statement_to_plan(DFStatement::Statement(retry))
                    .await?
            }
            other => other?,
        };
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        let (plan, bound) = bind_params(plan, params)?;
        let plan = semantics::postgres(plan)?;
        let plan = state.optimize(&plan)?;
        let scans = self.scans_of(&plan)?;
        let columns = output_columns(&plan, &names);
        Ok(Planned {
            state,
            plan,
            scans,
            columns,
            statement: original,
            params: bound,
        })
    }

    fn scans_of(&self, plan: &LogicalPlan) -> Result<Vec<Scan>, EngineError> {
        let mut scans: Vec<Scan> = Vec::new();
        let mut failure = None;
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Ok(provider) = source_as_provider(&scan.source)
                && let Some(table) = provider.downcast_ref::<LogicalTable>()
            {
                let key = scan_key(&table.name, scan);
                if !scans.iter().any(|s| s.key == key) {
                    match self.scan_for(table, scan, key) {
                        Ok(s) => scans.push(s),
                        Err(e) => {
                            failure = Some(e);
                            return Ok(TreeNodeRecursion::Stop);
                        }
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(scans),
        }
    }

    fn scan_for(
        &self,
        table: &LogicalTable,
        scan: &datafusion::logical_expr::TableScan,
        key: String,
    ) -> Result<Scan, EngineError> {
        let logical = self.catalog.tables.get(&table.name).ok_or_else(|| {
            EngineError::Internal(format!("table {} left the catalog", table.name))
        })?;
        let projected: Vec<usize> = match &scan.projection {
            Some(p) => p.clone(),
            None => (0..logical.columns.len()).collect(),
        };
        // A scan that needs no column (COUNT(*)) still reads one, to count rows.
        let fetched: Vec<usize> = if projected.is_empty() {
            vec![logical.primary_key.first().copied().unwrap_or(0)]
        } else {
            projected.clone()
        };
        let mut sql = String::from("SELECT ");
        for (i, c) in fetched.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let column = logical.columns.get(*c).ok_or_else(|| {
                EngineError::Internal(format!("column {c} of {} out of range", table.name))
            })?;
            sql.push_str(&pushdown::quote_ident(&column.name));
        }
        sql.push_str(" FROM ");
        sql.push_str(&pushdown::quote_ident(&table.name));
        let mut params = Vec::new();
        let filters: Vec<String> = scan
            .filters
            .iter()
            .filter_map(|f| pushdown::render(f, &table.schema, &mut params))
            .collect();
        if !filters.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&filters.join(" AND "));
        }
        // DataFusion pushes a limit only into a scan whose filters are all exact: here, none.
        if let (Some(limit), true) = (scan.fetch, scan.filters.is_empty()) {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let types = projected
            .iter()
            .filter_map(|c| logical.columns.get(*c).map(|col| col.ty))
            .collect();
        Ok(Scan {
            table: table.name.clone(),
            sql,
            params,
            key,
            projection: scan.projection.clone(),
            types,
            schema: table.schema.clone(),
            fetched_width: fetched.len(),
        })
    }
}

fn scan_key(table: &str, scan: &datafusion::logical_expr::TableScan) -> String {
    format!(
        "{table}|{:?}|{:?}|{:?}",
        scan.projection, scan.filters, scan.fetch
    )
}

/// One read the router runs for the engine: a single-table SELECT in the fast path's SQL.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The logical table.
    pub table: String,
    /// The statement (PostgreSQL dialect, `$n` placeholders).
    pub sql: String,
    /// Its parameters.
    pub params: Vec<serde_json::Value>,
    key: String,
    projection: Option<Vec<usize>>,
    types: Vec<LogicalType>,
    schema: datafusion::arrow::datatypes::SchemaRef,
    fetched_width: usize,
}

/// A planned statement waiting for its scans' rows.
pub struct Planned {
    state: datafusion::execution::SessionState,
    plan: LogicalPlan,
    scans: Vec<Scan>,
    columns: Vec<ResultColumn>,
    /// The statement as parsed, for whole-statement pushdown.
    statement: ast::Statement,
    /// The parameters as bound.
    params: Vec<Value>,
}

impl std::fmt::Debug for Planned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planned")
            .field("scans", &self.scans)
            .finish_non_exhaustive()
    }
}

/// The engine's answer: typed columns and the rows as DataFusion computes them.
pub struct Answer {
    /// Output columns, named as PostgreSQL names them.
    pub columns: Vec<ResultColumn>,
    /// The rows, in batches.
    pub rows: BoxStream<'static, Result<Vec<Vec<Value>>, EngineError>>,
}

impl Planned {
    /// The reads this statement needs, in plan order.
    pub fn scans(&self) -> &[Scan] {
        &self.scans
    }

    /// The answer's columns.
    pub fn columns(&self) -> &[ResultColumn] {
        &self.columns
    }

    /// The parameters, typed as the statement uses them.
    pub fn params(&self) -> &[Value] {
        &self.params
    }

    /// The whole statement in PostgreSQL's SQL over the physical tables of one store (every
    /// logical table it reads in `tables`), each output column as text (instants as UTC
    /// `YYYY-MM-DD HH:MM:SS.ffffff`); `None` when it cannot be pushed whole.
    pub fn postgres_statement(&self, tables: &HashMap<String, PhysicalTable>) -> Option<String> {
        let timestamps: Vec<bool> = self
            .columns
            .iter()
            .map(|c| c.ty == LogicalType::Timestamp)
            .collect();
        whole::postgres_statement(&self.statement, tables, &timestamps)
    }

    /// The optimized logical plan, one node per line (for `explain`).
    pub fn display(&self) -> String {
        self.plan.display_indent().to_string()
    }

    /// Computes the answer from the rows each scan returned (`fetched[i]` for `scans()[i]`,
    /// each row holding the scan's columns in order).
    pub async fn execute(self, fetched: Vec<Vec<Vec<Value>>>) -> Result<Answer, EngineError> {
        if fetched.len() != self.scans.len() {
            return Err(EngineError::Internal(format!(
                "{} scans, {} answers",
                self.scans.len(),
                fetched.len()
            )));
        }
        let batch_size = self.state.config().batch_size().max(1);
        let mut tables: HashMap<String, Arc<dyn TableProvider>> = HashMap::new();
        for (scan, rows) in self.scans.iter().zip(fetched) {
            let projected =
                datafusion::common::project_schema(&scan.schema, scan.projection.as_ref())?;
            let mut batches = Vec::with_capacity(rows.len() / batch_size + 1);
            for chunk in rows.chunks(batch_size) {
                if scan.types.len() != scan.fetched_width && !scan.types.is_empty() {
                    return Err(EngineError::Internal("scan width changed".to_owned()));
                }
                batches.push(convert::rows_to_batch(&projected, &scan.types, chunk)?);
            }
            tables.insert(
                scan.key.clone(),
                Arc::new(FetchedTable {
                    schema: scan.schema.clone(),
                    projection: scan.projection.clone(),
                    batches,
                }),
            );
        }
        let plan = self
            .plan
            .transform_up_with_subqueries(|node| match node {
                LogicalPlan::TableScan(mut scan) => {
                    let table = source_as_provider(&scan.source)
                        .ok()
                        .and_then(|p| p.downcast_ref::<LogicalTable>().map(|t| t.name.clone()));
                    match table.and_then(|t| tables.get(&scan_key(&t, &scan))) {
                        Some(fetched) => {
                            scan.source = provider_as_source(fetched.clone());
                            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                        }
                        None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
                    }
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        let columns = self.columns;
        let physical = self
            .state
            .query_planner()
            .create_physical_plan(&plan, &self.state)
            .await?;
        let stream = datafusion::physical_plan::execute_stream(physical, self.state.task_ctx())?;
        let rows = stream
            .map(|batch| {
                batch
                    .map_err(EngineError::from)
                    .and_then(|b| convert::batch_rows(&b))
            })
            .filter(|rows| futures::future::ready(!matches!(rows, Ok(r) if r.is_empty())))
            .boxed();
        Ok(Answer { columns, rows })
    }
}

/// The answer's columns: PostgreSQL's names, logical types from the plan's output.
fn output_columns(plan: &LogicalPlan, names: &[Option<String>]) -> Vec<ResultColumn> {
    let fields = plan.schema().fields();
    let names = names::align(names, fields.iter().map(|f| f.name().clone()).collect());
    names
        .into_iter()
        .zip(fields.iter())
        .map(|(name, field)| ResultColumn {
            name,
            ty: if convert::is_json_text(field) {
                LogicalType::Json
            } else {
                convert::logical_type(field.data_type())
            },
        })
        .collect()
}

/// Binds `$n` parameters to the plan, typed as the plan infers them (by their JSON kind where it
/// cannot); answers the bound plan and the values.
fn bind_params(
    plan: LogicalPlan,
    params: &[serde_json::Value],
) -> Result<(LogicalPlan, Vec<Value>), EngineError> {
    let types = plan.get_parameter_types()?;
    let mut wanted: Vec<(usize, Option<DataType>)> = Vec::with_capacity(types.len());
    for (name, ty) in types {
        let n = name
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| EngineError::BadParams(format!("unknown parameter {name}")))?;
        wanted.push((n, ty));
    }
    wanted.sort_by_key(|(n, _)| *n);
    let highest = wanted.last().map_or(0, |(n, _)| *n);
    if highest != params.len() || wanted.len() != params.len() {
        return Err(EngineError::BadParams(format!(
            "the statement uses {} parameter(s) ($1..${highest}), the request has {}",
            wanted.len(),
            params.len()
        )));
    }
    if params.is_empty() {
        return Ok((plan, Vec::new()));
    }
    let mut values = Vec::with_capacity(params.len());
    for ((n, ty), json) in wanted.into_iter().zip(params) {
        values.push(param_value(n, ty.as_ref(), json)?);
    }
    let bound = values
        .iter()
        .map(convert::scalar_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((plan.with_param_values(ParamValues::from(values))?, bound))
}

fn param_value(
    n: usize,
    ty: Option<&DataType>,
    json: &serde_json::Value,
) -> Result<ScalarValue, EngineError> {
    use serde_json::Value as J;
    let kind = match json {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        _ => "a JSON document",
    };
    let mismatch = |ty: &DataType| {
        EngineError::BadParams(format!("parameter ${n}: expected {ty}, got {kind}"))
    };
    let untyped = match json {
        J::Null => ScalarValue::Null,
        J::Bool(b) => ScalarValue::Boolean(Some(*b)),
        J::Number(x) => match x.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            // Exact decimals travel as text so no digit is lost to a float.
            None if ty.is_some_and(|t| matches!(t, DataType::Decimal128(..))) => {
                ScalarValue::Utf8(Some(x.to_string()))
            }
            None => ScalarValue::Float64(x.as_f64()),
        },
        J::String(s) => ScalarValue::Utf8(Some(s.clone())),
        other => ScalarValue::Utf8(Some(other.to_string())),
    };
    let Some(ty) = ty else { return Ok(untyped) };
    if untyped.is_null() {
        return ScalarValue::try_from(ty).map_err(EngineError::from);
    }
    // The JSON kinds each type accepts, as the fast path's parameters do.
    let numeric = ty.is_numeric();
    let accepted = match json {
        J::Bool(_) => *ty == DataType::Boolean,
        J::Number(_) => numeric,
        J::String(_) => !numeric || matches!(ty, DataType::Decimal128(..)),
        _ => matches!(
            ty,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
    };
    if !accepted {
        return Err(mismatch(ty));
    }
    untyped.cast_to(ty).map_err(|_| mismatch(ty))
}

#[cfg(test)]
mod tests;
