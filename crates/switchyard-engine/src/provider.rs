//! The logical tables as DataFusion sees them. Planning resolves names to [`LogicalTable`]s
//! (schema and which filters a scan can take, no data); once the router has fetched what each
//! scan names, the plan's scans are pointed at [`FetchedTable`]s holding those rows.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::memory::MemorySourceConfig;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result, internal_err, project_schema};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use switchyard_core::Catalog;

use crate::{convert, pushdown};

/// The catalog's tables under DataFusion's default schema, resolved by name when a statement
/// names them.
pub(crate) struct LogicalSchema {
    catalog: Arc<Catalog>,
}

impl LogicalSchema {
    pub(crate) fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

impl fmt::Debug for LogicalSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogicalSchema")
            .field("tables", &self.catalog.tables.len())
            .finish()
    }
}

#[async_trait]
impl SchemaProvider for LogicalSchema {
    fn table_names(&self) -> Vec<String> {
        self.catalog.tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        Ok(self.catalog.tables.get(name).map(|t| {
            Arc::new(LogicalTable {
                name: t.name.clone(),
                schema: convert::table_schema(t),
            }) as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.tables.contains_key(name)
    }
}

/// A logical table at planning time: its schema, and the filters its scan can take.
#[derive(Debug)]
pub(crate) struct LogicalTable {
    pub(crate) name: String,
    pub(crate) schema: SchemaRef,
}

#[async_trait]
impl TableProvider for LogicalTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if pushdown::pushable(f, &self.schema) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        internal_err!(
            "table {} was scanned before its rows were fetched",
            self.name
        )
    }
}

/// The rows the router fetched for one scan: only the scan's projected columns, in the
/// projection's order.
#[derive(Debug)]
pub(crate) struct FetchedTable {
    /// The whole table's schema (the plan's projection indexes it).
    pub(crate) schema: SchemaRef,
    pub(crate) projection: Option<Vec<usize>>,
    pub(crate) batches: Vec<RecordBatch>,
}

#[async_trait]
impl TableProvider for FetchedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if projection != self.projection.as_ref() {
            return internal_err!("a fetched scan was planned with another projection");
        }
        let projected = project_schema(&self.schema, projection)?;
        let exec =
            MemorySourceConfig::try_new_exec(std::slice::from_ref(&self.batches), projected, None)?;
        Ok(exec)
    }
}
