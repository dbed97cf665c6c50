//! Differential suite: the demo data placed entirely on PostgreSQL, MariaDB and SQLite in turn
//! answers the same statements with the same rows (PostgreSQL is the reference).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "differential_engine/mod.rs"]
mod engine;
mod tpch;
#[path = "tpch/suite.rs"]
mod tpch_suite;

use common::{EVERY_STORE, TestServer, TestStore, shop_on, start_server};
use serde_json::{Value as J, json};

/// A statement of the suite; `ordered` when its ORDER BY fixes the row order completely.
struct Case {
    sql: &'static str,
    params: J,
    ordered: bool,
}

fn suite() -> Vec<Case> {
    let o = |sql: &'static str, params: J| Case {
        sql,
        params,
        ordered: true,
    };
    let u = |sql: &'static str, params: J| Case {
        sql,
        params,
        ordered: false,
    };
    vec![
        o(
            "SELECT * FROM customers ORDER BY customer_id LIMIT 20",
            json!([]),
        ),
        o(
            "SELECT customer_id, name FROM customers WHERE state = $1 ORDER BY customer_id LIMIT 50",
            json!(["SP"]),
        ),
        u("SELECT COUNT(*) FROM customers", json!([])),
        o(
            "SELECT state, COUNT(*) FROM customers GROUP BY state ORDER BY state",
            json!([]),
        ),
        o(
            "SELECT state, city, COUNT(*) AS n FROM customers GROUP BY state, city HAVING COUNT(*) > 50 ORDER BY n DESC, state, city",
            json!([]),
        ),
        u(
            "SELECT COUNT(DISTINCT city), COUNT(email), COUNT(*) FROM customers",
            json!([]),
        ),
        o(
            "SELECT customer_id FROM customers WHERE email IS NULL ORDER BY customer_id",
            json!([]),
        ),
        u(
            "SELECT COUNT(*) FROM customers WHERE email IS NOT NULL",
            json!([]),
        ),
        o(
            "SELECT name FROM customers WHERE name LIKE 'Ana%' ORDER BY customer_id LIMIT 10",
            json!([]),
        ),
        u(
            "SELECT COUNT(*) FROM customers WHERE name NOT LIKE '%a%'",
            json!([]),
        ),
        u(
            "SELECT COUNT(*) FROM customers WHERE name LIKE 'a%'",
            json!([]),
        ),
        u(
            "SELECT COUNT(*) FROM customers WHERE email LIKE $1",
            json!(["%\\_%"]),
        ),
        o(
            "SELECT customer_id FROM customers WHERE state IN ('RJ', 'BA') AND city <> 'Salvador' ORDER BY customer_id LIMIT 30",
            json!([]),
        ),
        u(
            "SELECT COUNT(*) FROM customers WHERE created_at BETWEEN $1 AND $2",
            json!(["2024-03-01T00:00:00Z", "2024-06-30T23:59:59Z"]),
        ),
        o(
            "SELECT customer_id, created_at FROM customers WHERE created_at > '2024-12-20' ORDER BY created_at, customer_id",
            json!([]),
        ),
        o(
            "SELECT product_id, name, retail_price, discounted_price, rating, specs FROM products ORDER BY product_id LIMIT 10",
            json!([]),
        ),
        o(
            "SELECT category, COUNT(*), SUM(retail_price), MIN(discounted_price), MAX(rating) FROM products GROUP BY category ORDER BY category",
            json!([]),
        ),
        o(
            "SELECT brand, AVG(rating) FROM products GROUP BY brand ORDER BY brand",
            json!([]),
        ),
        o(
            "SELECT category, AVG(retail_price) FROM products GROUP BY category ORDER BY category",
            json!([]),
        ),
        o(
            "SELECT product_id, retail_price - discounted_price AS saving FROM products WHERE retail_price - discounted_price > 500 ORDER BY saving DESC, product_id LIMIT 15",
            json!([]),
        ),
        o(
            "SELECT product_id FROM products WHERE rating >= 4.5 AND category = $1 ORDER BY product_id",
            json!(["books"]),
        ),
        u(
            "SELECT COUNT(*) FROM products WHERE discounted_price BETWEEN 100 AND 200.50",
            json!([]),
        ),
        o(
            "SELECT p.product_id, p.name, i.stock FROM products p JOIN inventory i ON i.product_id = p.product_id WHERE i.stock < 5 ORDER BY p.product_id",
            json!([]),
        ),
        o(
            "SELECT i.warehouse, SUM(i.stock), COUNT(*) FROM inventory i GROUP BY i.warehouse ORDER BY 1",
            json!([]),
        ),
        o(
            "SELECT p.category, SUM(i.stock) AS units FROM products p JOIN inventory i ON i.product_id = p.product_id GROUP BY p.category ORDER BY units DESC",
            json!([]),
        ),
        o(
            "SELECT c.name, p.amount FROM customers c JOIN payments p ON p.customer_id = c.customer_id WHERE c.state = $1 ORDER BY p.amount DESC, p.payment_id LIMIT 5",
            json!(["SP"]),
        ),
        o(
            "SELECT c.customer_id, COUNT(o.order_id) AS n, SUM(o.total) FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id GROUP BY c.customer_id ORDER BY n DESC, c.customer_id LIMIT 20",
            json!([]),
        ),
        u(
            "SELECT COUNT(*) FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id WHERE o.order_id IS NULL",
            json!([]),
        ),
        o(
            "SELECT o.order_id, o.status, p.payment_type, p.installments FROM orders o JOIN payments p ON p.order_id = o.order_id WHERE o.customer_id = $1 ORDER BY o.order_id",
            json!(["c000001"]),
        ),
        o(
            "SELECT c.state, p.payment_type, COUNT(*), SUM(p.amount) FROM customers c JOIN orders o ON o.customer_id = c.customer_id JOIN payments p ON p.order_id = o.order_id GROUP BY c.state, p.payment_type ORDER BY c.state, p.payment_type",
            json!([]),
        ),
        o(
            "SELECT c.customer_id, ca.product_id, ca.quantity, pr.name, i.stock FROM carts ca JOIN customers c ON c.customer_id = ca.customer_id JOIN products pr ON pr.product_id = ca.product_id JOIN inventory i ON i.product_id = ca.product_id ORDER BY c.customer_id, ca.product_id LIMIT 40",
            json!([]),
        ),
        o(
            "SELECT status, COUNT(*), AVG(total), MAX(created_at) FROM orders GROUP BY status ORDER BY status",
            json!([]),
        ),
        u(
            "SELECT order_id, items, total FROM orders WHERE order_id = $1",
            json!(["o0000042"]),
        ),
        o(
            "SELECT payment_type, AVG(installments), MAX(installments), MIN(amount) FROM payments GROUP BY payment_type ORDER BY payment_type",
            json!([]),
        ),
        o(
            "SELECT DISTINCT payment_type FROM payments ORDER BY payment_type",
            json!([]),
        ),
        o(
            "SELECT DISTINCT state, city FROM customers ORDER BY state DESC, city",
            json!([]),
        ),
        o(
            "SELECT payment_id, amount FROM payments ORDER BY amount DESC, payment_id LIMIT 10 OFFSET 20",
            json!([]),
        ),
        o(
            "SELECT payment_id FROM payments WHERE installments % 2 = 0 AND installments * 2 > 10 ORDER BY payment_id LIMIT 10",
            json!([]),
        ),
        o(
            "SELECT upper(state) || '-' || lower(city) AS place, length(name) FROM customers ORDER BY customer_id LIMIT 10",
            json!([]),
        ),
        o(
            "SELECT customer_id, coalesce(email, 'none') FROM customers WHERE customer_id IN ('c000001', 'c000002', 'c000003', 'c000020') ORDER BY customer_id",
            json!([]),
        ),
        o(
            "SELECT customer_id, -installments, abs(-installments) FROM payments ORDER BY payment_id LIMIT 5",
            json!([]),
        ),
        o(
            "SELECT product_id, hits FROM product_hits WHERE hits > 4990 ORDER BY hits DESC, product_id",
            json!([]),
        ),
        o(
            "SELECT session_id, customer_id, data FROM sessions ORDER BY session_id LIMIT 5",
            json!([]),
        ),
        o(
            "SELECT customer_id, SUM(quantity) FROM carts GROUP BY customer_id HAVING SUM(quantity) >= 6 ORDER BY customer_id",
            json!([]),
        ),
        o(
            "SELECT email FROM customers ORDER BY email NULLS FIRST, customer_id LIMIT 5",
            json!([]),
        ),
        o(
            "SELECT email FROM customers ORDER BY email DESC NULLS LAST, customer_id LIMIT 5",
            json!([]),
        ),
        o(
            "SELECT email, customer_id FROM customers ORDER BY email DESC, customer_id LIMIT 5",
            json!([]),
        ),
        o(
            "SELECT state, COUNT(*) FROM customers WHERE NOT (state = 'SP' OR state = 'RJ') GROUP BY state ORDER BY 2 DESC, 1",
            json!([]),
        ),
        o(
            "SELECT order_id, total / 3, total * 2 FROM orders ORDER BY order_id LIMIT 5",
            json!([]),
        ),
        o(
            "SELECT product_id, stock / 7, stock % 7 FROM inventory ORDER BY product_id LIMIT 10",
            json!([]),
        ),
        o(
            "SELECT product_id, rating * 2, rating + 1 FROM products ORDER BY product_id LIMIT 5",
            json!([]),
        ),
        u(
            "SELECT SUM(amount), MIN(amount), MAX(amount) FROM payments WHERE amount > $1",
            json!([99999999]),
        ),
        u(
            "SELECT COUNT(*) FROM orders WHERE customer_id NOT IN ('c000001', 'c000002')",
            json!([]),
        ),
        o(
            "SELECT customer_id FROM customers WHERE city = $1 AND (state = $2 OR state = $3) ORDER BY customer_id LIMIT 7",
            json!(["Santos", "SP", "RJ"]),
        ),
        u(
            "SELECT * FROM customers WHERE customer_id = 'nobody'",
            json!([]),
        ),
    ]
    .into_iter()
    .chain(generated())
    .chain(answered())
    .collect()
}

/// `s` as a `&'static str` for a generated case (the suite lives for the whole test).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Every aggregate, plain and DISTINCT, in every clause (output, HAVING, ORDER BY), and the
/// expression shapes that once grew exponentially on MongoDB (long OR chains, NOT and function
/// calls nested in each other, OR in the output where NULLs matter).
fn generated() -> Vec<Case> {
    let mut out = Vec::new();
    for func in ["COUNT", "SUM", "AVG", "MIN", "MAX"] {
        for distinct in ["", "DISTINCT "] {
            for arg in ["quantity", "price"] {
                let agg = format!("{func}({distinct}{arg})");
                out.push(Case {
                    sql: leak(format!(
                        "SELECT product_id, {agg} AS a FROM order_items GROUP BY product_id ORDER BY product_id LIMIT 30"
                    )),
                    params: json!([]),
                    ordered: true,
                });
                out.push(Case {
                    sql: leak(format!(
                        "SELECT product_id FROM order_items GROUP BY product_id HAVING {agg} > 3 ORDER BY product_id LIMIT 30"
                    )),
                    params: json!([]),
                    ordered: true,
                });
                out.push(Case {
                    sql: leak(format!(
                        "SELECT product_id, COUNT(*) AS n FROM order_items GROUP BY product_id ORDER BY {agg} DESC, product_id LIMIT 10"
                    )),
                    params: json!([]),
                    ordered: true,
                });
            }
        }
    }
    let brands: Vec<String> = ["Acme", "Stark", "Hooli"]
        .into_iter()
        .map(str::to_owned)
        .chain((0..37).map(|i| format!("Brand {i}")))
        .map(|b| format!("brand = '{b}'"))
        .collect();
    out.push(Case {
        sql: leak(format!(
            "SELECT COUNT(*) FROM products WHERE {}",
            brands.join(" OR ")
        )),
        params: json!([]),
        ordered: false,
    });
    out.push(Case {
        sql: leak(format!(
            "SELECT product_id, (rating > 4.5 OR {}) AS hit FROM products ORDER BY product_id LIMIT 60",
            brands[1..31].join(" OR ")
        )),
        params: json!([]),
        ordered: true,
    });
    out.push(Case {
        sql: leak(format!(
            "SELECT COUNT(*) FROM products WHERE {}rating > 3{}",
            "NOT (".repeat(12),
            ")".repeat(12)
        )),
        params: json!([]),
        ordered: false,
    });
    out.push(Case {
        sql: leak(format!(
            "SELECT product_id, {}name{} AS n FROM products ORDER BY product_id LIMIT 10",
            "LOWER(UPPER(".repeat(6),
            "))".repeat(6)
        )),
        params: json!([]),
        ordered: true,
    });
    out
}

/// Statements every store refuses with the same code.
fn refused() -> Vec<(&'static str, J, &'static str)> {
    vec![
        (
            "SELECT COUNT(*) FROM customers WHERE name LIKE 'ab\\'",
            json!([]),
            "DATA_ERROR",
        ),
        (
            "SELECT COUNT(*) FROM customers WHERE name NOT LIKE $1",
            json!(["50\\"]),
            "DATA_ERROR",
        ),
        (
            leak(format!(
                "SELECT {} AS x FROM customers",
                vec!["1"; 300].join(" + ")
            )),
            json!([]),
            "QUERY_TOO_LARGE",
        ),
        // Client mistakes are the client's: 4xx, never a store's 502.
        (
            "SELECT installments + 9223372036854775807 FROM payments WHERE installments > 0",
            json!([]),
            "DATA_ERROR",
        ),
        (
            "SELECT 9223372036854775807 + 1 FROM payments",
            json!([]),
            "DATA_ERROR",
        ),
        (
            "SELECT installments / 0 FROM payments",
            json!([]),
            "DATA_ERROR",
        ),
        (
            "INSERT INTO customers (customer_id, name) VALUES ('nul', $1)",
            json!(["a\u{0}b"]),
            "BAD_PARAMS",
        ),
        (
            "SELECT name AS \"\" FROM customers",
            json!([]),
            "SQL_SYNTAX",
        ),
        (
            leak(format!(
                "SELECT {} FROM customers",
                vec!["name"; 1665].join(", ")
            )),
            json!([]),
            "QUERY_TOO_LARGE",
        ),
        (
            "UPDATE payments SET amount = 12345678901234.5 WHERE payment_id = 'x'",
            json!([]),
            "DATA_ERROR",
        ),
    ]
}

/// Statements every store answers, and answers alike (they once failed with 502).
fn answered() -> Vec<Case> {
    vec![
        Case {
            sql: "SELECT $1 AS p FROM customers LIMIT 2",
            params: json!(["abc"]),
            ordered: false,
        },
        Case {
            sql: "SELECT -9223372036854775808 AS m, 9223372036854775807 AS x FROM customers LIMIT 1",
            params: json!([]),
            ordered: false,
        },
    ]
}

/// Writes applied in order on every store, each followed by the read that checks its effect.
fn writes() -> Vec<(Case, Option<u64>, Case)> {
    let w = |sql: &'static str, params: J| Case {
        sql,
        params,
        ordered: false,
    };
    let r = |sql: &'static str| Case {
        sql,
        params: json!([]),
        ordered: true,
    };
    vec![
        (
            w(
                "INSERT INTO customers (customer_id, name, email, city, state, created_at) VALUES ($1, $2, NULL, 'Recife', 'PE', $3), ('z000002', 'Zoë Ünicode ✓', 'z@x.io', 'Recife', 'PE', '2025-01-02T03:04:05.123Z')",
                json!(["z000001", "Zed", "2025-01-01T00:00:00+03:00"]),
            ),
            Some(2),
            r("SELECT * FROM customers WHERE state = 'PE' ORDER BY customer_id"),
        ),
        (
            w(
                "UPDATE inventory SET stock = stock - $1, warehouse = 'XXX' WHERE product_id = $2 AND stock >= $1",
                json!([1, "p000002"]),
            ),
            Some(1),
            r("SELECT product_id, stock, warehouse FROM inventory WHERE product_id = 'p000002'"),
        ),
        (
            w(
                "UPDATE inventory SET stock = stock - 100000 WHERE product_id = 'p000003' AND stock >= 100000",
                json!([]),
            ),
            Some(0),
            r("SELECT product_id, stock FROM inventory WHERE product_id = 'p000003'"),
        ),
        (
            w(
                "INSERT INTO carts (customer_id, product_id, quantity) VALUES ('z000001', 'p000009', 2) ON CONFLICT (customer_id, product_id) DO UPDATE SET quantity = carts.quantity + EXCLUDED.quantity",
                json!([]),
            ),
            None,
            r("SELECT * FROM carts WHERE customer_id = 'z000001' ORDER BY product_id"),
        ),
        (
            w(
                "INSERT INTO carts (customer_id, product_id, quantity) VALUES ('z000001', 'p000009', 3) ON CONFLICT (customer_id, product_id) DO UPDATE SET quantity = carts.quantity + EXCLUDED.quantity",
                json!([]),
            ),
            None,
            r("SELECT * FROM carts WHERE customer_id = 'z000001' ORDER BY product_id"),
        ),
        (
            w(
                "INSERT INTO customers (customer_id, name) VALUES ('z000001', 'Other') ON CONFLICT DO NOTHING",
                json!([]),
            ),
            None,
            r("SELECT customer_id, name FROM customers WHERE customer_id = 'z000001'"),
        ),
        (
            w(
                "UPDATE products SET specs = $1, rating = $2, retail_price = $3 WHERE product_id = 'p000001'",
                json!([{ "color": "teal", "dims": [1, 2.5, { "deep": null }] }, 0.1, "123456789.99"]),
            ),
            Some(1),
            r(
                "SELECT product_id, specs, rating, retail_price FROM products WHERE product_id = 'p000001'",
            ),
        ),
        (
            w(
                "UPDATE products SET specs = $1 WHERE product_id IN ('p000003', 'p000004')",
                json!(["plain"]),
            ),
            Some(2),
            r(
                "SELECT product_id, specs FROM products WHERE product_id IN ('p000003', 'p000004') ORDER BY product_id",
            ),
        ),
        (
            w(
                "UPDATE products SET specs = $1 WHERE product_id = 'p000005'",
                json!([12.5]),
            ),
            Some(1),
            r("SELECT product_id, specs FROM products WHERE product_id = 'p000005'"),
        ),
        (
            w(
                "DELETE FROM sessions WHERE session_id IN ($1, $2)",
                json!(["s000001", "s000002"]),
            ),
            Some(2),
            r("SELECT COUNT(*) FROM sessions"),
        ),
        (
            w(
                "INSERT INTO customers (customer_id, name) VALUES ('z000003', $1)",
                json!(["Nl\n"]),
            ),
            Some(1),
            r(
                "SELECT customer_id, name LIKE 'Nl' AS exact, name LIKE 'Nl_' AS one, name LIKE 'Nl%' AS prefix, name LIKE '%l' AS suffix FROM customers WHERE customer_id = 'z000003'",
            ),
        ),
        (
            w("DELETE FROM payments WHERE amount < 0", json!([])),
            Some(0),
            r("SELECT COUNT(*) FROM payments"),
        ),
    ]
}

/// Equality with a relative tolerance for floats (sums in different orders differ in the last bits).
fn approx_eq(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Number(x), J::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
        }
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| approx_eq(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| approx_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Runs a statement through the real HTTP endpoint.
async fn answer(server: &TestServer, case: &Case) -> J {
    let a = common::query(server.addr, case.sql, case.params.clone()).await;
    match a.status {
        200 => {
            let mut body = engine::canonical(&a.body);
            if !case.ordered
                && let Some(rows) = body["rows"].as_array_mut()
            {
                rows.sort_by_key(|r| r.to_string());
            }
            body
        }
        _ => a.body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_rows_on_postgres_mariadb_and_sqlite() {
    let stores: Vec<TestStore> = EVERY_STORE.iter().map(|s| TestStore::new(*s)).collect();
    let mut routers = Vec::new();
    for s in &stores {
        let server = start_server(shop_on(s.backend.clone())).await;
        common::seed(&server.router, 1).await;
        routers.push((s.store, server));
    }
    let suite = suite();
    assert!(suite.len() >= 50, "suite has {} statements", suite.len());
    let mut failures = Vec::new();
    for case in &suite {
        let reference = answer(&routers[0].1, case).await;
        assert!(
            reference.get("error").is_none(),
            "reference failed on {}: {reference}",
            case.sql
        );
        for (store, router) in &routers[1..] {
            let got = answer(router, case).await;
            if !approx_eq(&reference, &got) {
                failures.push(format!(
                    "{store:?} differs on {}\n  postgres: {reference}\n  {store:?}: {got}",
                    case.sql
                ));
            }
        }
    }
    // PostgreSQL's own answers come from views with the logical names over the PostgreSQL
    // store's physical tables (some placements rename columns).
    let physical = stores[0]
        .backend
        .schema
        .clone()
        .expect("PostgreSQL test schema");
    let schema = format!("{physical}_oracle");
    let views = engine::logical_views(routers[0].1.router.catalog(), &physical, &schema);
    let url = common::pg_url();
    tokio::task::spawn_blocking(move || engine::postgres_rows(&url, "public", &views))
        .await
        .expect("psql task")
        .expect("oracle views");
    let _drop_oracle = engine::DropSchema(schema.clone());
    for case in engine::engine_suite() {
        let (url, schema_name, sql) = (common::pg_url(), schema.clone(), case.sql);
        let reference =
            tokio::task::spawn_blocking(move || engine::postgres_rows(&url, &schema_name, sql))
                .await
                .expect("psql task");
        let pg = match reference {
            Ok(rows) => rows,
            Err(e) => {
                failures.push(format!("PostgreSQL refused {sql}: {e}"));
                continue;
            }
        };
        for (store, router) in &routers {
            let a = common::query(router.addr, sql, json!([])).await;
            if a.status != 200 {
                failures.push(format!(
                    "{store:?} answered {sql} with {}: {}",
                    a.status, a.body
                ));
                continue;
            }
            if let Err(e) = engine::same_as_postgres(&a.body, &pg, case.ordered) {
                failures.push(format!("{store:?} differs from PostgreSQL on {sql}: {e}"));
            }
        }
    }
    for (write, affected, read) in writes() {
        let mut reference: Option<(J, J)> = None;
        for (store, router) in &routers {
            let result = common::query(router.addr, write.sql, write.params.clone()).await;
            if result.status != 200 {
                failures.push(format!("{store:?} failed {}: {}", write.sql, result.body));
                continue;
            }
            if let Some(n) = affected
                && result.body["rows_affected"] != json!(n)
            {
                failures.push(format!(
                    "{store:?} {}: rows_affected {:?}, expected {n}",
                    write.sql, result.body["rows_affected"]
                ));
            }
            let after = answer(router, &read).await;
            let key = (json!(write.sql), after);
            match &reference {
                None => reference = Some(key),
                Some((_, r)) if !approx_eq(r, &key.1) => {
                    failures.push(format!(
                        "{store:?} differs after {}\n  postgres: {r}\n  {store:?}: {}",
                        write.sql, key.1
                    ));
                }
                Some(_) => {}
            }
        }
    }
    for (sql, params, code) in refused() {
        for (store, router) in &routers {
            let a = common::query(router.addr, sql, params.clone()).await;
            if a.body["error"]["code"] != code {
                failures.push(format!(
                    "{store:?} answered {sql} with {}: {}, expected {code}",
                    a.status, a.body
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
