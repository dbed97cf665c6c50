//! Statements only the router-side engine runs (subqueries, CTEs, CASE, casts, dates, windows,
//! set operations, every join form), answered by the router on every store and compared with
//! what PostgreSQL itself answers on the same data (`psql` on the PostgreSQL store's schema).

#![allow(dead_code)] // each test binary uses part of it

use std::collections::BTreeMap;
use std::process::Command;

use chrono::{DateTime, NaiveDateTime};
use serde_json::Value as J;

/// A statement and whether its ORDER BY fixes the row order completely.
pub struct EngineCase {
    pub sql: &'static str,
    pub ordered: bool,
}

pub fn engine_suite() -> Vec<EngineCase> {
    let o = |sql| EngineCase { sql, ordered: true };
    let u = |sql| EngineCase {
        sql,
        ordered: false,
    };
    vec![
        u(
            "SELECT customer_id, CASE WHEN amount > 100 THEN 'big' ELSE 'small' END AS size FROM payments",
        ),
        u(
            "SELECT payment_id, CASE payment_type WHEN 'boleto' THEN 1 WHEN 'voucher' THEN 2 ELSE 0 END FROM payments",
        ),
        u(
            "SELECT name FROM customers WHERE customer_id IN (SELECT customer_id FROM payments WHERE amount > 9000)",
        ),
        u(
            "SELECT name FROM customers WHERE customer_id NOT IN (SELECT customer_id FROM payments WHERE amount > 100)",
        ),
        u(
            "WITH big AS (SELECT customer_id FROM payments WHERE amount > 9000) SELECT COUNT(*) FROM big",
        ),
        u("SELECT customer_id FROM customers UNION SELECT customer_id FROM payments"),
        u("SELECT state FROM customers UNION ALL SELECT payment_type FROM payments"),
        u("SELECT customer_id FROM customers INTERSECT SELECT customer_id FROM payments"),
        u("SELECT customer_id FROM customers EXCEPT SELECT customer_id FROM payments"),
        o(
            "SELECT customer_id, amount, rank() OVER (PARTITION BY customer_id ORDER BY amount DESC) FROM payments ORDER BY customer_id, amount DESC, payment_id",
        ),
        o(
            "SELECT payment_id, row_number() OVER (ORDER BY amount DESC, payment_id) AS rn, SUM(amount) OVER (PARTITION BY customer_id) AS total FROM payments ORDER BY rn LIMIT 50",
        ),
        o(
            "SELECT payment_id, lag(amount) OVER (ORDER BY payment_id), lead(amount, 2) OVER (ORDER BY payment_id) FROM payments ORDER BY payment_id LIMIT 30",
        ),
        o(
            "SELECT date_trunc('month', created_at) AS m, COUNT(*) FROM orders GROUP BY 1 ORDER BY 1",
        ),
        u("SELECT EXTRACT(YEAR FROM created_at) AS y, COUNT(*) FROM customers GROUP BY 1"),
        u("SELECT CAST(amount AS int), amount::text FROM payments"),
        u("SELECT name FROM customers WHERE name ILIKE 'ana%'"),
        u(
            "SELECT COUNT(*) FROM customers c WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.customer_id = c.customer_id)",
        ),
        u(
            "SELECT customer_id FROM customers c WHERE EXISTS (SELECT 1 FROM payments p WHERE p.customer_id = c.customer_id AND p.amount > 9000)",
        ),
        u(
            "SELECT c.customer_id, (SELECT MAX(amount) FROM payments p WHERE p.customer_id = c.customer_id) AS top FROM customers c",
        ),
        u(
            "SELECT SUBSTRING(name FROM 1 FOR 3), TRIM(name), REPLACE(name, 'a', 'b'), UPPER(city), LENGTH(name) FROM customers",
        ),
        u("SELECT current_date = CAST(now() AS date) AS today, 1 + 1 AS two"),
        u(
            "SELECT c.state, SUM(o.total) FROM customers c JOIN orders o ON o.customer_id = c.customer_id WHERE o.created_at > TIMESTAMP '2024-06-01' - interval '30 days' GROUP BY c.state",
        ),
        u("SELECT COUNT(*) FILTER (WHERE amount > 100), COUNT(*) FROM payments"),
        o(
            "SELECT DISTINCT ON (customer_id) customer_id, amount FROM payments ORDER BY customer_id, amount DESC",
        ),
        u(
            "SELECT c.name, p.payment_id FROM customers c RIGHT JOIN payments p ON p.customer_id = c.customer_id",
        ),
        u(
            "SELECT c.customer_id, p.payment_id FROM customers c FULL JOIN payments p ON p.customer_id = c.customer_id",
        ),
        u(
            "SELECT COUNT(*) FROM customers, payments WHERE payments.customer_id = customers.customer_id",
        ),
        u(
            "SELECT p.category, COUNT(*) FROM products p JOIN order_items i ON i.product_id = p.product_id GROUP BY p.category",
        ),
        u(
            "SELECT i.order_id, COUNT(*) FROM order_items i JOIN inventory v ON v.product_id = i.product_id AND v.stock < i.quantity * 10 GROUP BY i.order_id",
        ),
        u(
            "SELECT ROUND(amount * 1.1, 1), CEIL(amount), FLOOR(amount), ABS(-installments), GREATEST(installments, 3), LEAST(installments, 3), NULLIF(installments, 1), COALESCE(NULLIF(payment_type, 'boleto'), 'other') FROM payments",
        ),
        u(
            "SELECT t.c, t.n FROM (SELECT state AS c, COUNT(*) AS n FROM customers GROUP BY state) AS t WHERE t.n > 10",
        ),
        u(
            "SELECT state, COUNT(*) FROM customers GROUP BY state HAVING COUNT(*) > (SELECT COUNT(*) / 30 FROM customers)",
        ),
        u(
            "SELECT customer_id, POSITION('a' IN name), SPLIT_PART(email, '@', 2), CONCAT(name, '-', state), LEFT(name, 2), RIGHT(name, 2), LPAD(state, 4, '*') FROM customers",
        ),
        u("SELECT name FROM customers WHERE name ~ '^A.*a$'"),
        u(
            "SELECT state, string_agg(customer_id, ',' ORDER BY customer_id), bool_and(email IS NOT NULL), bool_or(city = 'Recife') FROM customers GROUP BY state",
        ),
        u("SELECT state, city, COUNT(*) FROM customers GROUP BY ROLLUP (state, city)"),
        u(
            "SELECT payment_type, installments, COUNT(*) FROM payments GROUP BY GROUPING SETS ((payment_type), (installments))",
        ),
        u(
            "SELECT payment_id, POWER(installments, 2), MOD(installments, 3), dense_rank() OVER (ORDER BY installments), first_value(payment_id) OVER (PARTITION BY payment_type ORDER BY payment_id) FROM payments",
        ),
        u(
            "SELECT payment_id, SUM(amount) OVER (PARTITION BY customer_id ORDER BY payment_id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM payments",
        ),
        u(
            "SELECT order_id, date_part('month', created_at), created_at + interval '1 day' FROM orders",
        ),
        u(
            "SELECT COUNT(*) FROM orders WHERE created_at >= DATE '2024-03-01' AND created_at < DATE '2024-03-01' + interval '1 month'",
        ),
        u(
            "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10) SELECT SUM(n) FROM t",
        ),
        u("SELECT COUNT(*) FROM customers CROSS JOIN (SELECT 1 AS k UNION ALL SELECT 2) t"),
        u("SELECT o.order_id, o.items->0->>'product_id', o.items->1 FROM orders o"),
        u(
            "SELECT o.items->0->>'product_id' AS p, COUNT(*) FROM orders o GROUP BY 1 HAVING COUNT(*) > 3",
        ),
        u("SELECT o.order_id, jsonb_array_elements(o.items) FROM orders o"),
        u(
            "SELECT payment_type, percentile_cont(0.5) WITHIN GROUP (ORDER BY amount), percentile_cont(0.9) WITHIN GROUP (ORDER BY installments) FROM payments GROUP BY payment_type",
        ),
        u(
            "SELECT order_id, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), to_char(created_at, 'FMDD Mon YY') FROM orders",
        ),
        u(
            "SELECT customer_id, age(TIMESTAMP '2025-03-01 12:00:00', created_at), created_at - TIMESTAMP '2024-01-01' FROM customers",
        ),
        u(
            "SELECT interval '1 year 2 months 3 days 04:05:06.5', interval '-1 day -01:30', interval '36 hours', interval '1 month' - interval '1 day', '2 days 00:00:01.5'::interval",
        ),
    ]
}

/// SQL creating `schema` with one view per logical table over its PostgreSQL placement's
/// physical table in `physical`, with the logical column names.
pub fn logical_views(catalog: &switchyard_core::Catalog, physical: &str, schema: &str) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut sql = format!("CREATE SCHEMA {};", q(schema));
    for (name, table) in &catalog.tables {
        let primary = table
            .placements
            .iter()
            .find(|p| p.role == switchyard_core::Role::Primary);
        let Some(p) = primary.or(table.placements.first()) else {
            continue;
        };
        let columns: Vec<String> = table
            .columns
            .iter()
            .zip(&p.physical_columns)
            .map(|(c, phys)| format!("{} AS {}", q(phys), q(&c.name)))
            .collect();
        sql.push_str(&format!(
            "CREATE VIEW {}.{} AS SELECT {} FROM {}.{};",
            q(schema),
            q(name),
            columns.join(", "),
            q(physical),
            q(&p.physical_name)
        ));
    }
    sql
}

/// Drops the oracle schema when the test ends.
pub struct DropSchema(pub String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0);
        let url = std::env::var("SWITCHYARD_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let _ = postgres_rows(&url, "public", &sql);
    }
}

/// PostgreSQL's own answer, in its text form (`None` for NULL), read with `psql` from `schema`.
pub fn postgres_rows(
    url: &str,
    schema: &str,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, String> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-F", "\u{1f}", "-R", "\u{1e}", "-P", "null=\u{1a}"])
        .args(["-c", sql])
        .env(
            "PGOPTIONS",
            format!("-c search_path={schema} -c TimeZone=UTC"),
        )
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    Ok(text
        .split('\u{1e}')
        .map(|row| {
            row.split('\u{1f}')
                .map(|cell| (cell != "\u{1a}").then(|| cell.to_owned()))
                .collect()
        })
        .collect())
}

/// One cell in a form both sides agree on: numbers to 9 significant digits, instants as
/// microseconds, booleans as `t`/`f`, JSON canonical, text as is.
fn norm(ty: &str, cell: Option<&str>, json: Option<&J>) -> String {
    let Some(text) = cell else {
        return "∅".to_owned();
    };
    match ty {
        "int" | "float" | "decimal" => text
            .parse::<f64>()
            .map(|f| format!("{f:.9e}"))
            .unwrap_or_else(|_| format!("not a number: {text}")),
        "timestamp" => DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_micros())
            .or_else(|_| {
                DateTime::parse_from_str(&format!("{text}00"), "%Y-%m-%d %H:%M:%S%.f%z")
                    .map(|t| t.timestamp_micros())
            })
            .or_else(|_| {
                NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                    .map(|t| t.and_utc().timestamp_micros())
            })
            .map(|us| us.to_string())
            .unwrap_or_else(|_| format!("not a timestamp: {text}")),
        "bool" => match text {
            "true" | "t" => "t".to_owned(),
            "false" | "f" => "f".to_owned(),
            other => format!("not a bool: {other}"),
        },
        "json" => json
            .cloned()
            .or_else(|| serde_json::from_str(text).ok())
            .map(|j| canonical(&j).to_string())
            .unwrap_or_else(|| format!("not json: {text}")),
        _ => text.to_owned(),
    }
}

/// JSON with sorted object keys, so documents from different stores compare and sort the same.
pub fn canonical(v: &J) -> J {
    match v {
        J::Object(m) => {
            let sorted: BTreeMap<&String, J> = m.iter().map(|(k, v)| (k, canonical(v))).collect();
            J::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        J::Array(a) => J::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The router's answer rows, normalized.
pub fn router_rows(body: &J) -> Result<Vec<Vec<String>>, String> {
    let types: Vec<String> = body["columns"]
        .as_array()
        .ok_or_else(|| format!("no columns: {body}"))?
        .iter()
        .map(|c| c["type"].as_str().unwrap_or("?").to_owned())
        .collect();
    let rows = body["rows"]
        .as_array()
        .ok_or_else(|| format!("no rows: {body}"))?;
    Ok(rows
        .iter()
        .map(|row| {
            row.as_array()
                .map(|cells| {
                    cells
                        .iter()
                        .zip(&types)
                        .map(|(cell, ty)| match cell {
                            J::Null => norm(ty, None, None),
                            J::String(s) => norm(ty, Some(s), None),
                            J::Bool(b) => norm(ty, Some(if *b { "t" } else { "f" }), None),
                            J::Number(n) => norm(ty, Some(&n.to_string()), None),
                            other => norm(ty, Some(&other.to_string()), Some(other)),
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect())
}

/// PostgreSQL's rows normalized with the router's column types.
pub fn reference_rows(body: &J, pg: &[Vec<Option<String>>]) -> Vec<Vec<String>> {
    let types: Vec<String> = body["columns"]
        .as_array()
        .map(|cols| {
            cols.iter()
                .map(|c| c["type"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default();
    pg.iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, cell)| {
                    norm(
                        types.get(i).map_or("text", String::as_str),
                        cell.as_deref(),
                        None,
                    )
                })
                .collect()
        })
        .collect()
}

/// The router's answer `body` against PostgreSQL's rows `pg` (as multisets unless `ordered`):
/// `Err` says how they differ.
pub fn same_as_postgres(body: &J, pg: &[Vec<Option<String>>], ordered: bool) -> Result<(), String> {
    let mut got = router_rows(body)?;
    let mut want = reference_rows(body, pg);
    if !ordered {
        got.sort();
        want.sort();
    }
    if got == want {
        return Ok(());
    }
    let first = got
        .iter()
        .zip(&want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    Err(format!(
        "{} rows vs PostgreSQL's {}; first difference at row {first}: {:?} vs {:?}",
        got.len(),
        want.len(),
        got.get(first),
        want.get(first)
    ))
}
