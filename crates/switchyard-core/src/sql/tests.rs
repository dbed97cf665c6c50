//! Snapshot tests: SQL + parameters + the shop catalog -> plan (or error), one helper for all.

use serde_json::{Value as J, json};

use crate::Catalog;

fn shop() -> Catalog {
    let text = include_str!("../../../../router.toml");
    let config =
        switchyard_config::parse_str(text, "router.toml", &|_| None).expect("router.toml is valid");
    Catalog::from_config(&config)
}

/// Plans every case and renders plan or error, so one snapshot shows a whole suite.
fn check(cases: &[(&str, J)]) -> String {
    let catalog = shop();
    let mut out = String::new();
    for (sql, params) in cases {
        let params = params.as_array().cloned().unwrap_or_default();
        out.push_str(&format!("> {sql}\n"));
        match crate::plan(sql, &params, &catalog) {
            Ok(plan) => out.push_str(&plan.describe(&catalog)),
            Err(e) => {
                let at = e
                    .position()
                    .map(|p| format!(" at {}:{}", p.line, p.column))
                    .unwrap_or_default();
                out.push_str(&format!("{}{at}: {e}\n", e.code()));
            }
        }
        out.push('\n');
    }
    out
}

#[test]
fn selects() {
    insta::assert_snapshot!(check(&[
        (
            "SELECT c.name, p.amount FROM customers c JOIN payments p ON p.customer_id = c.customer_id WHERE c.state = $1 ORDER BY p.amount DESC LIMIT 5",
            json!(["SP"]),
        ),
        (
            "SELECT * FROM inventory WHERE stock BETWEEN 1 AND $1 AND warehouse IN ('A', 'B')",
            json!([10])
        ),
        (
            "select count(*), count(distinct state), state from customers group by state having count(*) > 1 order by 1 desc nulls last",
            json!([])
        ),
        (
            "SELECT customer_id, SUM(amount) AS spend, AVG(amount), AVG(installments), MIN(payment_type) FROM payments GROUP BY customer_id ORDER BY spend DESC, customer_id LIMIT $1 OFFSET $2",
            json!([3, 6])
        ),
        (
            "SELECT name FROM customers WHERE email LIKE 'a%' AND NOT (city IS NULL) OR created_at > '2024-01-01'",
            json!([])
        ),
        (
            "SELECT i.product_id, i.stock * 2 + 1 AS doubled, -i.stock FROM inventory i LEFT JOIN customers c ON c.customer_id = i.product_id WHERE i.stock <> 0",
            json!([])
        ),
        (
            "SELECT DISTINCT upper(state) || '-' || lower(city), length(name), coalesce(city, 'none') FROM customers",
            json!([])
        ),
        (
            "SELECT amount / 3, amount * installments, amount + 1.5 FROM payments WHERE amount >= $1",
            json!(["10.5"])
        ),
        (
            "SELECT state AS s, count(*) FROM customers GROUP BY s",
            json!([])
        ),
        (
            "SELECT * FROM products WHERE product_id = $1",
            json!(["p1"])
        ),
        (
            "SELECT * FROM sessions WHERE session_id IN ($1, $2)",
            json!(["a", "b"])
        ),
    ]));
}

#[test]
fn writes() {
    insta::assert_snapshot!(check(&[
        (
            "INSERT INTO payments (payment_id, order_id, customer_id, payment_type, installments, amount) VALUES ($1, 'o1', 'c1', 'card', 1, 9.99), ('p2', 'o2', 'c2', 'pix', $2, $3)",
            json!(["p1", 2, "10.50"]),
        ),
        (
            "INSERT INTO inventory VALUES ('p1', 5, 'A', '2024-05-01T10:00:00Z') ON CONFLICT (product_id) DO UPDATE SET stock = inventory.stock + EXCLUDED.stock",
            json!([])
        ),
        (
            "INSERT INTO customers (customer_id, name) VALUES ('c1', 'Ana') ON CONFLICT DO NOTHING",
            json!([])
        ),
        (
            "UPDATE inventory SET stock = stock - $1 WHERE product_id = $2 AND stock >= $1",
            json!([2, "p1"])
        ),
        (
            "DELETE FROM payments WHERE amount < 0 OR payment_type = $1",
            json!(["void"])
        ),
    ]));
}

#[test]
fn errors() {
    insta::assert_snapshot!(check(&[
        ("SELEC * FROM customers", json!([])),
        ("SELECT * FROM customers WHERE", json!([])),
        ("", json!([])),
        ("SELECT * FROM nope", json!([])),
        ("SELECT nope FROM customers", json!([])),
        ("SELECT c.nope FROM customers c", json!([])),
        ("SELECT x.name FROM customers c", json!([])),
        (
            "SELECT customer_id FROM customers c JOIN payments p ON p.customer_id = c.customer_id",
            json!([])
        ),
        ("SELECT * FROM customers WHERE name = $1", json!([])),
        ("SELECT * FROM inventory WHERE stock = $1", json!(["many"])),
        ("SELECT * FROM inventory WHERE stock = $1", json!([1, 2])),
        ("SELECT * FROM inventory WHERE stock = 'many'", json!([])),
        ("SELECT * FROM inventory WHERE warehouse > 3", json!([])),
        (
            "SELECT * FROM customers WHERE created_at > 'yesterday'",
            json!([])
        ),
        (
            "SELECT state, name FROM customers GROUP BY state",
            json!([])
        ),
        ("SELECT * FROM customers WHERE count(*) > 1", json!([])),
        (
            "SELECT * FROM customers UNION SELECT * FROM customers",
            json!([])
        ),
        (
            "SELECT * FROM customers c RIGHT JOIN payments p ON p.customer_id = c.customer_id",
            json!([])
        ),
        (
            "SELECT * FROM customers WHERE customer_id IN (SELECT customer_id FROM payments)",
            json!([])
        ),
        ("WITH x AS (SELECT 1) SELECT * FROM x", json!([])),
        ("CREATE TABLE t (a int)", json!([])),
        ("SELECT 1", json!([])),
        ("SELECT * FROM customers; SELECT * FROM payments", json!([])),
        ("SELECT CAST(stock AS text) FROM inventory", json!([])),
        (
            "SELECT * FROM customers c JOIN orders o ON o.customer_id = c.customer_id",
            json!([])
        ),
        (
            "INSERT INTO payments (payment_id, amount) VALUES ('p', 'lots')",
            json!([])
        ),
        (
            "INSERT INTO payments (payment_id, amount) VALUES ('p')",
            json!([])
        ),
        ("SELECT * FROM customers LIMIT -1", json!([])),
        ("SELECT * FROM customers ORDER BY 9", json!([])),
        ("SELECT specs FROM products WHERE specs = 'x'", json!([])),
    ]));
}
