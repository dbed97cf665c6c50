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

/// Route requests as plugins see them, and the validation of routes against them.
#[test]
fn route_requests_and_validation() {
    use crate::routing::{Input, MergeNode, MergeOp, Route, RouteFragment, WritePlan, validate};
    let catalog = shop();
    let mut out = String::new();
    let requests = [
        (
            "SELECT * FROM products WHERE product_id = $1",
            json!(["p1"]),
        ),
        (
            "SELECT * FROM carts WHERE customer_id = 'c1' AND product_id IN ('p1', 'p2')",
            json!([]),
        ),
        (
            "SELECT c.name, SUM(p.amount) FROM customers c JOIN payments p ON c.customer_id = p.customer_id WHERE c.state = $1 AND p.amount BETWEEN 1 AND 100 GROUP BY c.name ORDER BY 2 DESC LIMIT 3",
            json!(["SP"]),
        ),
        (
            "INSERT INTO carts (customer_id, product_id, quantity) VALUES ('c1', 'p1', 2), ('c1', 'p2', 1)",
            json!([]),
        ),
        (
            "UPDATE inventory SET stock = stock - 1 WHERE product_id = $1 AND stock > 0",
            json!(["p9"]),
        ),
    ];
    for (sql, params) in requests {
        let params = params.as_array().cloned().unwrap_or_default();
        let (_, req) = crate::plan_with_request(
            sql,
            &params,
            &catalog,
            vec![("tenant".into(), "eu".into())],
            Vec::new(),
        )
        .expect("plans");
        out.push_str(&format!(
            "> {sql}\n{:#?}\n\n",
            (
                req.kind,
                &req.accesses,
                &req.joins,
                &req.group_by,
                &req.aggregates,
                &req.order_by,
                req.limit
            )
        ));
    }
    // Routes for the product point lookup: valid ones pass, each broken one says why.
    let (_, req) = crate::plan_with_request(
        "SELECT * FROM products WHERE product_id = 'p1'",
        &[],
        &catalog,
        Vec::new(),
        Vec::new(),
    )
    .expect("plans");
    let (pg, mongo, redis) = (0, 1, 2);
    let frag = |backend, accesses: Vec<usize>| RouteFragment { backend, accesses };
    let first_hit = |inputs| Route {
        fragments: vec![frag(redis, vec![0]), frag(mongo, vec![0])],
        nodes: vec![MergeNode {
            op: MergeOp::FirstHit {
                fill: true,
                ttl_seconds: Some(300),
            },
            inputs,
        }],
        root: Input::Node(0),
        write: None,
    };
    let cases = [
        ("default", req.default_route.clone()),
        (
            "first-hit",
            first_hit(vec![Input::Fragment(0), Input::Fragment(1)]),
        ),
        ("cache outside first-hit", Route::single(redis, 1)),
        ("backend without placement", Route::single(pg, 1)),
        ("unknown backend", Route::single(9, 1)),
        (
            "uncovered access",
            Route {
                fragments: vec![frag(mongo, vec![])],
                ..Route::single(mongo, 1)
            },
        ),
        (
            "first-hit with one input",
            first_hit(vec![Input::Fragment(0)]),
        ),
        (
            "forward node reference",
            first_hit(vec![Input::Fragment(0), Input::Node(3)]),
        ),
        (
            "unused fragment",
            Route {
                fragments: vec![frag(mongo, vec![0]), frag(mongo, vec![0])],
                ..Route::single(mongo, 1)
            },
        ),
        (
            "write plan on a read",
            Route {
                write: Some(WritePlan {
                    targets: vec![mongo],
                    invalidate: vec![],
                }),
                ..Route::single(mongo, 1)
            },
        ),
    ];
    for (name, route) in cases {
        let verdict = match validate(&route, &req, &catalog) {
            Ok(()) => "valid".to_owned(),
            Err(e) => format!("invalid: {e}"),
        };
        out.push_str(&format!("{name}: {verdict}\n"));
    }
    let (_, write) = crate::plan_with_request(
        "DELETE FROM products WHERE product_id = 'p1'",
        &[],
        &catalog,
        Vec::new(),
        Vec::new(),
    )
    .expect("plans");
    for (name, plan) in [
        ("write default", write.default_route.write.clone()),
        (
            "write to the cache",
            Some(WritePlan {
                targets: vec![redis],
                invalidate: vec![],
            }),
        ),
        (
            "invalidate a non-cache",
            Some(WritePlan {
                targets: vec![mongo],
                invalidate: vec![pg],
            }),
        ),
        ("write without plan", None),
    ] {
        let route = Route {
            write: plan,
            ..Route::single(mongo, 1)
        };
        let verdict = validate(&route, &write, &catalog)
            .map_or_else(|e| format!("invalid: {e}"), |()| "valid".to_owned());
        out.push_str(&format!("{name}: {verdict}\n"));
    }
    insta::assert_snapshot!(out);
}

/// Runs `f` on a thread with a 2 MiB stack, the size of a tokio worker's.
fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .expect("spawns")
        .join()
        .expect("does not overflow its stack")
}

/// Operator chains nest one level per operator, however long the statement: past
/// `execution.max_expr_depth` they are refused with a position, never a stack overflow; chains
/// of one AND/OR are bound as balanced trees and may be long.
#[test]
fn deep_expressions_are_bounded() {
    let chain = |n: usize, term: &str, op: &str| vec![term; n].join(op);
    // At the limit a chain binds (256 terms nest 255 levels under the output column).
    let catalog = shop();
    let at_limit = format!(
        "SELECT {} AS x FROM customers LIMIT 1",
        chain(256, "1", "+")
    );
    let planned = on_small_stack(move || crate::plan(&at_limit, &[], &catalog).is_ok());
    assert!(planned, "a chain at the limit plans");
    let out = on_small_stack(move || {
        check(&[
            (
                &format!(
                    "SELECT {} AS x FROM customers LIMIT 1",
                    chain(300, "1", "+")
                ),
                json!([]),
            ),
            (
                &format!(
                    "SELECT name FROM customers WHERE {}",
                    chain(900, "name", " || ") + " = 'x'"
                ),
                json!([]),
            ),
            (
                &format!(
                    "SELECT 1 FROM customers WHERE customer_id = 'c1' AND ({})",
                    chain(4, "state = 'CA'", " OR ")
                ),
                json!([]),
            ),
        ])
    });
    insta::assert_snapshot!(out);

    // A generated filter of 5,000 OR terms binds and nests 13 levels deep.
    let catalog = shop();
    let sql = format!(
        "SELECT name FROM customers WHERE {}",
        (0..5000)
            .map(|i| format!("name = 'n{i}'"))
            .collect::<Vec<_>>()
            .join(" OR ")
    );
    let plan = on_small_stack(move || crate::plan(&sql, &[], &catalog).map(|p| p.query));
    let query = plan.expect("a long OR chain binds");
    let crate::ir::Statement::Select(select) = &query.statement else {
        panic!("a select");
    };
    let depth = expr_depth(select.filter.as_ref().expect("a filter"));
    assert!(depth <= 15, "depth {depth}");

    // Parentheses nested past the parser's recursion limit: QUERY_TOO_LARGE, not a syntax error.
    let catalog = shop();
    let parens = format!(
        "SELECT 1 FROM customers WHERE {}name = 'x'{}",
        "NOT (".repeat(60),
        ")".repeat(60)
    );
    let e = on_small_stack(move || crate::plan(&parens, &[], &catalog).err());
    assert!(
        matches!(e, Some(crate::error::CoreError::TooNested { limit: 50 })),
        "{e:?}"
    );
    assert_eq!(
        e.map(|e| e.code()),
        Some(crate::error::ErrorCode::QueryTooLarge)
    );
}

fn expr_depth(e: &crate::ir::Expr) -> usize {
    use crate::ir::ExprKind as K;
    let children: Vec<&crate::ir::Expr> = match &e.kind {
        K::Binary { left, right, .. } => vec![left, right],
        K::Unary { expr, .. } | K::IsNull { expr, .. } => vec![expr],
        K::InList { expr, list, .. } => std::iter::once(&**expr).chain(list).collect(),
        K::Between {
            expr, low, high, ..
        } => vec![expr, low, high],
        K::Like { expr, pattern, .. } => vec![expr, pattern],
        K::Func { args, .. } => args.iter().collect(),
        K::Agg { arg, .. } => arg.iter().map(|a| &**a).collect(),
        K::Column { .. } | K::Excluded { .. } | K::Literal(_) | K::Param(_) => Vec::new(),
    };
    1 + children.into_iter().map(expr_depth).max().unwrap_or(0)
}

/// Statements of 1 MiB (the default body limit) that nest a level every two bytes: parsed,
/// refused and dropped without overflowing a runtime thread's stack.
#[test]
fn deep_statements_drop_on_their_stack() {
    let mib = 1024 * 1024;
    let repeat = |head: &str, unit: &str, tail: &str| {
        let mut s = head.to_owned();
        while s.len() + unit.len() + tail.len() < mib {
            s.push_str(unit);
        }
        s.push_str(tail);
        s
    };
    let cases = [
        repeat("SELECT 1", "+1", " FROM customers"),
        repeat("SELECT 1 FROM customers WHERE true", " OR true", ""),
        repeat("SELECT 1 FROM customers WHERE name = 'a'", "||'a'", ""),
        repeat("SELECT name", "::text", " FROM customers"),
        repeat(
            "SELECT 1 FROM customers",
            " UNION SELECT 1 FROM customers",
            "",
        ),
        repeat("SELECT f(1", "+1", ") FROM customers"),
        repeat("SELECT 1 FROM inventory WHERE stock IN (1", ",1+1", ")"),
    ];
    let codes = on_small_stack(move || {
        let catalog = shop();
        cases
            .iter()
            .map(|sql| match crate::plan(sql, &[], &catalog) {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.code().as_str().to_owned(),
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(
        codes,
        [
            "QUERY_TOO_LARGE",
            "ok",
            "QUERY_TOO_LARGE",
            "QUERY_TOO_LARGE",
            "UNSUPPORTED",
            "QUERY_TOO_LARGE",
            "ok"
        ]
    );
}
