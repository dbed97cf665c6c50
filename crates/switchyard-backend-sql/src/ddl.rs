//! Physical tables for logical ones: `CREATE TABLE IF NOT EXISTS` per dialect.
//!
//! Storage choices (so that every logical type round-trips and sorts the same everywhere):
//!
//! | logical   | PostgreSQL         | MySQL / MariaDB         | SQLite                         |
//! |-----------|--------------------|-------------------------|--------------------------------|
//! | int       | BIGINT             | BIGINT                  | INTEGER                        |
//! | float     | DOUBLE PRECISION   | DOUBLE                  | REAL                           |
//! | decimal   | NUMERIC(p,s)       | DECIMAL(p,s)            | REAL (rounded to s on read)    |
//! | text      | TEXT COLLATE "C"   | TEXT / VARCHAR(255) key | TEXT                           |
//! | bool      | BOOLEAN            | BOOLEAN                 | INTEGER 0/1                    |
//! | timestamp | TIMESTAMPTZ        | DATETIME(6), UTC        | TEXT, RFC 3339 `...ssssssZ`    |
//! | date      | DATE               | DATE                    | TEXT, `YYYY-MM-DD`             |
//! | json      | JSONB              | JSON                    | TEXT                           |
//!
//! Text compares and sorts by code point everywhere (`COLLATE "C"`, `utf8mb4_bin`, SQLite's
//! BINARY), and SQLite's LIKE is made case-sensitive, so the same query gives the same rows on
//! every store.

use switchyard_core::{LogicalType, Placement, Table};

use crate::render::{Dialect, quote_ident};

/// `CREATE TABLE IF NOT EXISTS` for `table` as `placement` lays it out.
pub fn create_table(dialect: Dialect, table: &Table, placement: &Placement) -> String {
    let q = |n: &str| quote_ident(dialect, n);
    let mut cols = Vec::new();
    for (i, c) in table.columns.iter().enumerate() {
        let is_key = table.primary_key.contains(&i);
        let ty = column_type(dialect, c.ty, is_key);
        let not_null = if is_key { " NOT NULL" } else { "" };
        cols.push(format!(
            "{} {ty}{not_null}",
            q(&placement.physical_columns[i])
        ));
    }
    let pk: Vec<String> = table
        .primary_key
        .iter()
        .map(|i| q(&placement.physical_columns[*i]))
        .collect();
    cols.push(format!("PRIMARY KEY ({})", pk.join(", ")));
    let suffix = match dialect {
        Dialect::Mysql => " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        _ => "",
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}){suffix}",
        q(&placement.physical_name),
        cols.join(", ")
    )
}

fn column_type(dialect: Dialect, ty: LogicalType, is_key: bool) -> String {
    use LogicalType as T;
    match (dialect, ty) {
        (Dialect::Postgres, T::Int) | (Dialect::Mysql, T::Int) => "BIGINT".to_owned(),
        (Dialect::Sqlite, T::Int) => "INTEGER".to_owned(),
        (Dialect::Postgres, T::Float) => "DOUBLE PRECISION".to_owned(),
        (Dialect::Mysql, T::Float) => "DOUBLE".to_owned(),
        (Dialect::Sqlite, T::Float | T::Decimal { .. }) => "REAL".to_owned(),
        (Dialect::Postgres, T::Decimal { precision, scale }) => {
            format!("NUMERIC({precision},{scale})")
        }
        (Dialect::Mysql, T::Decimal { precision, scale }) => {
            format!("DECIMAL({precision},{scale})")
        }
        (Dialect::Postgres, T::Text) => "TEXT COLLATE \"C\"".to_owned(),
        (Dialect::Mysql, T::Text) => if is_key { "VARCHAR(255)" } else { "TEXT" }.to_owned(),
        (Dialect::Sqlite, T::Text | T::Timestamp | T::Date | T::Json) => "TEXT".to_owned(),
        (Dialect::Postgres | Dialect::Mysql, T::Date) => "DATE".to_owned(),
        (Dialect::Postgres | Dialect::Mysql, T::Bool) => "BOOLEAN".to_owned(),
        (Dialect::Sqlite, T::Bool) => "INTEGER".to_owned(),
        (Dialect::Postgres, T::Timestamp) => "TIMESTAMPTZ".to_owned(),
        (Dialect::Mysql, T::Timestamp) => "DATETIME(6)".to_owned(),
        (Dialect::Postgres, T::Json) => "JSONB".to_owned(),
        (Dialect::Mysql, T::Json) => "JSON".to_owned(),
    }
}
