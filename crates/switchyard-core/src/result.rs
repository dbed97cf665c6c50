//! Result sets: typed columns and rows of values, as backends return them and clients receive them.

use crate::{LogicalType, Value};

/// One output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultColumn {
    /// Name as the client sees it.
    pub name: String,
    /// Logical type of every value in the column.
    pub ty: LogicalType,
}

/// The answer to one statement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultSet {
    /// Output columns (empty for writes).
    pub columns: Vec<ResultColumn>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
    /// Rows written, for INSERT/UPDATE/DELETE.
    pub rows_affected: Option<u64>,
}

impl ResultSet {
    /// The JSON body of a successful `/v1/query` answer.
    pub fn to_json(&self) -> serde_json::Value {
        let columns: Vec<serde_json::Value> = self
            .columns
            .iter()
            .map(|c| serde_json::json!({ "name": c.name, "type": c.ty.name() }))
            .collect();
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|row| {
                serde_json::Value::Array(
                    row.iter()
                        .zip(&self.columns)
                        .map(|(v, c)| v.to_json(c.ty))
                        .collect(),
                )
            })
            .collect();
        serde_json::json!({ "columns": columns, "rows": rows, "rows_affected": self.rows_affected })
    }
}
