//! Property-based fuzzing of every input surface that turns text into work, with structured
//! generators (proptest) so deep and wide statements are reached quickly:
//!
//! - SQL: statements over the shop catalog (expressions nested and chained up to thousands of
//!   levels, every operator, aggregates, joins, writes, hostile literals and parameters, and
//!   random cuts and splices of them) through parsing, binding, planning, route validation,
//!   each SQL dialect's renderer and the MongoDB translator with its size guard;
//! - routes: arbitrary routes (fragments, merge nodes, roots, write plans) against the request
//!   of a real statement through `validate`, as a plugin could return them.
//!
//! The property is "no panic, no stack overflow, no hang": every outcome is a value. CI runs a
//! bounded number of cases (`SWITCHYARD_FUZZ_CASES`, default 400 per target, well under a
//! minute); a long local run sets it high (see README, "Fuzzing"). Failing cases proptest
//! finds are kept in this crate's `proptest-regressions/` and replayed first.

use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::{Value as J, json};
use switchyard_backend_sql::render::{Dialect, render};
use switchyard_core::Catalog;
use switchyard_core::routing::{
    Input, MergeNode, MergeOp, Route, RouteFragment, WritePlan, validate,
};

fn shop() -> Catalog {
    let text = include_str!("../../../router.toml");
    let config = switchyard_config::parse_str(text, "router.toml", &|_| None)
        .unwrap_or_else(|e| panic!("router.toml: {e}"));
    Catalog::from_config(&config)
}

/// A runner for one target; failing cases it finds are written to (and replayed first from)
/// `proptest-regressions/<target>.txt` in this crate: commit them, they are the corpus.
fn runner(target: &'static str) -> TestRunner {
    let cases = std::env::var("SWITCHYARD_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(400);
    TestRunner::new(RunnerConfig {
        cases,
        max_shrink_iters: 200,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(target),
        )),
        ..RunnerConfig::default()
    })
}

/// Runs `round` once or, with `SWITCHYARD_FUZZ_SECONDS`, again and again (fresh random cases
/// each time) until that many seconds have passed: the long local runs.
pub(crate) fn for_rounds(mut round: impl FnMut()) {
    let seconds = std::env::var("SWITCHYARD_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let mut rounds = 0u64;
    loop {
        round();
        rounds += 1;
        if std::time::Instant::now() >= deadline {
            break;
        }
    }
    eprintln!("fuzz: {rounds} rounds");
}

/// A table of the shop catalog: name, numeric columns, text columns.
type TableShape = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const TABLES: [TableShape; 5] = [
    (
        "customers",
        &[],
        &["customer_id", "name", "email", "city", "state"],
    ),
    (
        "payments",
        &["installments", "amount"],
        &["payment_id", "order_id", "customer_id", "payment_type"],
    ),
    (
        "products",
        &["retail_price", "discounted_price", "rating"],
        &["product_id", "name", "brand", "category"],
    ),
    ("inventory", &["stock"], &["product_id", "warehouse"]),
    ("carts", &["quantity"], &["customer_id", "product_id"]),
];

/// The join of customers (`c`) and payments (`p`), columns qualified.
const JOINED: TableShape = (
    "customers c JOIN payments p ON p.customer_id = c.customer_id",
    &["p.installments", "p.amount"],
    &[
        "c.customer_id",
        "c.name",
        "c.city",
        "p.payment_id",
        "p.payment_type",
    ],
);

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i32>().prop_map(|i| i.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        Just("9223372036854775807".to_owned()),
        Just("9223372036854775808".to_owned()),
        (0u32..1_000_000, 0u32..100).prop_map(|(a, b)| format!("{a}.{b}")),
        Just("0".to_owned()),
        Just("NULL".to_owned()),
        Just("$1".to_owned()),
    ]
}

fn text_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-zA-Z0-9 %_\\\\'éü✓]{0,12}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        1 => Just("'ab\\'".to_owned()),
        1 => Just("''".to_owned()),
        1 => Just("NULL".to_owned()),
        2 => (2u32..4).prop_map(|n| format!("${n}")),
    ]
}

fn pick(columns: &'static [&'static str]) -> BoxedStrategy<String> {
    if columns.is_empty() {
        number().boxed()
    } else {
        proptest::sample::select(columns)
            .prop_map(str::to_owned)
            .boxed()
    }
}

/// Numeric expressions over a table.
fn num(t: TableShape, depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![2 => pick(t.1), 1 => number()];
    leaf.prop_recursive(depth, 128, 6, move |inner| {
        prop_oneof![
            (
                inner.clone(),
                proptest::sample::select(&["+", "-", "*", "/", "+", "-", "*", "%"][..]),
                inner.clone()
            )
                .prop_map(|(a, o, b)| format!("{a} {o} {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            inner.clone().prop_map(|a| format!("ABS({a})")),
        ]
    })
    .boxed()
}

/// How long a generated operator chain is: mostly within `execution.max_expr_depth`, now and
/// then far past it (refused with QUERY_TOO_LARGE, which must stay an answer, not a crash).
fn chain_length() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 1usize..200, 1 => 200usize..3000]
}

/// `num` or, now and then, a long `+` chain of a small one (deep: one level per operator).
fn num_or_chain(t: TableShape, depth: u32) -> BoxedStrategy<String> {
    prop_oneof![
        8 => num(t, depth),
        1 => (num(t, 1), chain_length()).prop_map(|(a, n)| vec![a; n].join(" + ")),
    ]
    .boxed()
}

/// Text expressions over a table.
fn text(t: TableShape, depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![2 => pick(t.2), 1 => text_literal()];
    leaf.prop_recursive(depth, 128, 6, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} || {b}")),
            inner.clone().prop_map(|a| format!("LOWER({a})")),
            inner.clone().prop_map(|a| format!("UPPER({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("COALESCE({a}, {b})")),
        ]
    })
    .boxed()
}

/// `text` or, now and then, a long `||` or cast chain of a small one.
fn text_or_chain(t: TableShape, depth: u32) -> BoxedStrategy<String> {
    prop_oneof![
        16 => text(t, depth),
        1 => (text(t, 1), chain_length()).prop_map(|(a, n)| vec![a; n].join(" || ")),
        1 => (text(t, 1), chain_length()).prop_map(|(a, n)| format!("{a}{}", "::text".repeat(n))),
    ]
    .boxed()
}

/// Conditions over a table: comparisons, IN, BETWEEN, LIKE, IS NULL, joined by AND/OR/NOT,
/// nested and chained (thousands of terms).
fn cond(t: TableShape, depth: u32) -> BoxedStrategy<String> {
    let cmp = proptest::sample::select(&["=", "<>", "<", "<=", ">", ">="][..]);
    let leaf = prop_oneof![
        (num(t, 2), cmp.clone(), num(t, 2)).prop_map(|(a, o, b)| format!("{a} {o} {b}")),
        (text(t, 2), cmp, text(t, 2)).prop_map(|(a, o, b)| format!("{a} {o} {b}")),
        (num(t, 1), proptest::collection::vec(number(), 1..30))
            .prop_map(|(a, l)| format!("{a} IN ({})", l.join(", "))),
        (
            text(t, 1),
            any::<bool>(),
            proptest::collection::vec(text_literal(), 1..30)
        )
            .prop_map(|(a, n, l)| format!(
                "{a} {}IN ({})",
                if n { "NOT " } else { "" },
                l.join(", ")
            )),
        (num(t, 1), number(), number()).prop_map(|(a, l, h)| format!("{a} BETWEEN {l} AND {h}")),
        (text(t, 1), text_literal()).prop_map(|(a, p)| format!("{a} LIKE {p}")),
        (text(t, 1), any::<bool>())
            .prop_map(|(a, n)| format!("{a} IS {}NULL", if n { "NOT " } else { "" })),
        Just("TRUE".to_owned()),
    ];
    leaf.prop_recursive(depth, 256, 8, |inner| {
        prop_oneof![
            (
                inner.clone(),
                proptest::sample::select(&["AND", "OR"][..]),
                inner.clone()
            )
                .prop_map(|(a, o, b)| format!("({a}) {o} ({b})")),
            inner.clone().prop_map(|a| format!("NOT ({a})")),
            (
                proptest::sample::select(&[" OR ", " AND "][..]),
                proptest::collection::vec(inner.clone(), 1..8)
            )
                .prop_map(|(o, terms)| {
                    let terms: Vec<String> = terms.iter().map(|c| format!("({c})")).collect();
                    terms.join(o)
                }),
        ]
    })
    .boxed()
}

/// `cond` or, now and then, a generated filter: thousands of AND/OR terms of a small one.
fn cond_or_chain(t: TableShape, depth: u32) -> BoxedStrategy<String> {
    prop_oneof![
        6 => cond(t, depth),
        1 => (
            proptest::sample::select(&[" OR ", " AND "][..]),
            cond(t, 1),
            1usize..3000
        )
            .prop_map(|(o, c, n)| vec![format!("({c})"); n].join(o)),
    ]
    .boxed()
}

fn statement() -> impl Strategy<Value = String> {
    proptest::sample::select(&TABLES[..]).prop_flat_map(|t| {
        let table = t.0;
        let group = pick(t.2);
        let agg = (
            proptest::sample::select(&["COUNT", "SUM", "AVG", "MIN", "MAX"][..]),
            any::<bool>(),
            num(t, 2),
        )
            .prop_map(|(f, d, a)| format!("{f}({}{a})", if d { "DISTINCT " } else { "" }));
        prop_oneof![
            3 => (
                proptest::collection::vec(prop_oneof![num_or_chain(t, 4), text_or_chain(t, 4)], 1..4),
                proptest::option::of(cond_or_chain(t, 4)),
                proptest::option::of(prop_oneof![num(t, 2), text(t, 2)]),
                proptest::option::of(0u64..100),
                any::<bool>(),
            )
                .prop_map(move |(items, filter, order, limit, distinct)| {
                    let mut s = format!(
                        "SELECT {}{} FROM {table}",
                        if distinct { "DISTINCT " } else { "" },
                        items.join(", ")
                    );
                    if let Some(f) = filter {
                        s.push_str(&format!(" WHERE {f}"));
                    }
                    if let Some(o) = order {
                        s.push_str(&format!(" ORDER BY {o} DESC NULLS FIRST"));
                    }
                    if let Some(l) = limit {
                        s.push_str(&format!(" LIMIT {l}"));
                    }
                    s
                }),
            1 => (group, agg.clone(), agg.clone(), agg, proptest::option::of(cond(t, 3)))
                .prop_map(move |(g, a, h, o, f)| format!(
                    "SELECT {g}, {a} FROM {table}{} GROUP BY {g} HAVING {h} > 1 ORDER BY {o} DESC, {g} LIMIT 7",
                    f.map(|f| format!(" WHERE {f}")).unwrap_or_default()
                )),
            1 => (cond(JOINED, 3), num(JOINED, 2)).prop_map(|(f, o)| format!(
                "SELECT c.name, p.amount FROM customers c JOIN payments p ON p.customer_id = c.customer_id WHERE {f} ORDER BY {o}, c.name LIMIT 20"
            )),
            1 => (pick(t.1), num(t, 3), cond(t, 3)).prop_map(move |(c, v, f)| format!(
                "UPDATE {table} SET {c} = {v} WHERE {f}"
            )),
            1 => (pick(t.2), text(t, 3), cond(t, 3)).prop_map(move |(c, v, f)| format!(
                "UPDATE {table} SET {c} = {v} WHERE {f}"
            )),
            1 => cond_or_chain(t, 3).prop_map(move |f| format!("DELETE FROM {table} WHERE {f}")),
            1 => (proptest::collection::vec(text_literal(), 1..4), proptest::collection::vec(number(), 0..2))
                .prop_map(move |(texts, nums)| {
                    let mut cols: Vec<&str> = t.2.iter().take(texts.len()).copied().collect();
                    let mut vals: Vec<String> = texts.into_iter().take(cols.len()).collect();
                    for (c, v) in t.1.iter().zip(nums) {
                        cols.push(c);
                        vals.push(v);
                    }
                    format!("INSERT INTO {table} ({}) VALUES ({})", cols.join(", "), vals.join(", "))
                }),
        ]
    })
}

/// A statement, sometimes cut short or with a random splice: the parser's error paths.
fn mangled_statement() -> impl Strategy<Value = String> {
    (statement(), 0usize..100, "[()',;$:\\\\%_ a-z0-9]{0,4}").prop_map(|(s, cut, splice)| {
        if cut < 80 {
            return s;
        }
        let at = s.len() * (cut - 80) / 20;
        let at = (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        format!("{}{splice}", &s[..at])
    })
}

fn param() -> impl Strategy<Value = J> {
    prop_oneof![
        Just(J::Null),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z0-9\\\\%_\u{0}é']{0,8}".prop_map(|s| json!(s)),
        any::<bool>().prop_map(|b| json!(b)),
        Just(json!({ "a": [1, { "b": null }] })),
        Just(json!("123456789012345678901234567890.5")),
    ]
}

/// Every stage a statement goes through, none of which may panic; whether it planned.
fn run_statement(catalog: &Catalog, sql: &str, params: &[J]) -> bool {
    if std::env::var_os("SWITCHYARD_FUZZ_DEBUG").is_some() {
        // A stack overflow aborts without unwinding: the statement that did it is kept here.
        let last = std::env::temp_dir().join("switchyard-fuzz-last.sql");
        std::fs::write(last, format!("{sql}\n{params:?}")).ok();
    }
    let (plan, request) =
        match switchyard_core::plan_with_request(sql, params, catalog, Vec::new(), Vec::new()) {
            Ok(p) => p,
            Err(e) => {
                if std::env::var_os("SWITCHYARD_FUZZ_DEBUG").is_some() {
                    eprintln!(
                        "NOPLAN {e} :: {}",
                        sql.chars().take(300).collect::<String>()
                    );
                }
                return false;
            }
        };
    // The default planner's route is valid by construction.
    if let Err(e) = validate(&plan.route, &request, catalog) {
        panic!("the default route of {sql} fails validation: {e:?}");
    }
    let _ = plan.describe(catalog);
    // Every renderer and the translator, over whichever store holds the statement's table.
    let backends: Vec<String> = plan
        .query
        .statement
        .tables()
        .iter()
        .filter_map(|t| catalog.table(t))
        .flat_map(|t| t.placements.iter().map(|p| p.backend.clone()))
        .collect();
    for backend in &backends {
        for dialect in [Dialect::Postgres, Dialect::Mysql, Dialect::Sqlite] {
            let _ = render(&plan.query, catalog, backend, dialect);
        }
        if let Ok(command) =
            switchyard_backend_mongo::translate::translate(&plan.query, catalog, backend)
        {
            // What passes the guard is rendered (explain) and sent; what fails it never is.
            if command.check_limits().is_ok() {
                let _ = command.to_text();
            }
        }
    }
    true
}

/// The corpus: statements that once crashed, exhausted or corrupted (issue 14 and what the
/// fuzzer found since), replayed through every stage on every run. Shapes are generated so the
/// sizes are the ones that did the damage.
fn corpus() -> Vec<(String, Vec<J>)> {
    let chain = |n: usize, term: &str, op: &str| vec![term; n].join(op);
    let ors = |n: usize| {
        (0..n)
            .map(|_| "brand = $1".to_owned())
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    vec![
        // Left-deep operator chains that overflowed the stack (1.6 KB statements).
        (
            format!("SELECT {} AS x FROM customers LIMIT 1", chain(775, "1", "+")),
            vec![],
        ),
        (
            format!("SELECT name FROM customers WHERE {}", chain(900, "name = 'a'", " AND ")),
            vec![],
        ),
        (
            format!("SELECT name FROM customers WHERE {}", chain(900, "name = 'a'", " OR ")),
            vec![],
        ),
        (
            format!("SELECT name FROM customers WHERE {} = 'x'", chain(900, "name", " || ")),
            vec![],
        ),
        (
            format!("SELECT {} FROM payments", chain(115, "UPPER(payment_type)", " || ")),
            vec![],
        ),
        // OR chains that doubled the MongoDB pipeline per term.
        (
            format!("SELECT name FROM products WHERE {}", ors(16)),
            vec![json!("Acme")],
        ),
        (
            format!("SELECT COUNT(*) FROM products WHERE {}", ors(100)),
            vec![json!("Acme")],
        ),
        // Parentheses past the parser's recursion limit, casts past the depth limit.
        (
            format!(
                "SELECT 1 FROM customers WHERE {}name = 'x'{}",
                "NOT (".repeat(60),
                ")".repeat(60)
            ),
            vec![],
        ),
        (
            format!("SELECT name{} FROM customers", "::text".repeat(2000)),
            vec![],
        ),
        // Wrong answers and refusals that once were 502s.
        (
            "SELECT brand, MIN(DISTINCT rating), MAX(DISTINCT rating) FROM products GROUP BY brand HAVING MAX(DISTINCT rating) > 1000 ORDER BY MIN(DISTINCT rating)".to_owned(),
            vec![],
        ),
        ("SELECT name FROM customers WHERE name LIKE 'ab\\'".to_owned(), vec![]),
        ("SELECT $1 FROM customers".to_owned(), vec![json!("abc")]),
        ("SELECT -9223372036854775808 FROM customers".to_owned(), vec![]),
        ("SELECT 1 AS \"\" FROM customers".to_owned(), vec![]),
        ("SELECT retail_price / 0 FROM products".to_owned(), vec![]),
        ("UPDATE sessions SET data = $1 WHERE session_id = $2".to_owned(), vec![json!({"a": 1}), json!("s1")]),
        ("UPDATE products SET specs = 'plain' WHERE product_id = 'p1'".to_owned(), vec![]),
        ("SELECT name FROM customers WHERE name = $1".to_owned(), vec![json!("a\u{0}b")]),
    ]
}

#[test]
fn corpus_statements_never_crash() {
    let catalog = shop();
    for (sql, params) in corpus() {
        run_statement(&catalog, &sql, &params);
    }
}

#[test]
fn fuzz_sql_through_planning_rendering_and_translation() {
    let catalog = shop();
    // `$1` stands for a number, `$2` and `$3` for text: well-typed values most of the time, so
    // statements reach planning, and anything at all now and then.
    let strategy = (
        mangled_statement(),
        proptest::collection::vec((0u8..10, param()), 3),
    );
    let (planned, total) = (
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    );
    for_rounds(|| {
        runner("proptest-regressions/fuzz_sql.txt")
            .run(&strategy, |(sql, choices)| {
                let used = (1..=3)
                    .rev()
                    .find(|n| sql.contains(&format!("${n}")))
                    .unwrap_or(0);
                let params: Vec<J> = choices
                    .into_iter()
                    .take(used)
                    .enumerate()
                    .map(|(i, (roll, any))| match (roll, i) {
                        (0, _) => any,
                        (_, 0) => json!(i64::from(roll) * 7 - 20),
                        (_, _) => json!(format!("v{roll}%")),
                    })
                    .collect();
                if run_statement(&catalog, &sql, &params) {
                    planned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
    });
    // The generator must reach past the parser and binder, or the later stages go unfuzzed.
    let (planned, total) = (planned.into_inner(), total.into_inner());
    eprintln!("fuzz: {planned} of {total} statements planned");
    assert!(
        planned * 4 >= total,
        "only {planned} of {total} statements planned"
    );
}

fn route(fragments: usize, accesses: usize, backends: usize) -> impl Strategy<Value = Route> {
    let input = move || {
        prop_oneof![
            (0..fragments + 1).prop_map(Input::Fragment),
            (0usize..4).prop_map(Input::Node),
        ]
    };
    let op = prop_oneof![
        Just(MergeOp::UnionAll),
        Just(MergeOp::UnionDistinct),
        (0usize..3).prop_map(|edge| MergeOp::HashJoin { edge }),
        (any::<bool>(), proptest::option::of(any::<u32>()))
            .prop_map(|(fill, ttl_seconds)| MergeOp::FirstHit { fill, ttl_seconds }),
        Just(MergeOp::AggregateCombine),
        any::<u64>().prop_map(|limit| MergeOp::TopK { limit }),
    ];
    (
        proptest::collection::vec(
            (
                0..backends + 1,
                proptest::collection::vec(0..accesses + 1, 0..3),
            )
                .prop_map(|(backend, accesses)| RouteFragment { backend, accesses }),
            0..fragments + 1,
        ),
        proptest::collection::vec(
            (op, proptest::collection::vec(input(), 0..4))
                .prop_map(|(op, inputs)| MergeNode { op, inputs }),
            0..4,
        ),
        input(),
        proptest::option::of(
            (
                proptest::collection::vec(0..backends + 1, 0..3),
                proptest::collection::vec(0..backends + 1, 0..3),
            )
                .prop_map(|(targets, invalidate)| WritePlan {
                    targets,
                    invalidate,
                }),
        ),
    )
        .prop_map(|(fragments, nodes, root, write)| Route {
            fragments,
            nodes,
            root,
            write,
        })
}

#[test]
fn fuzz_route_validation() {
    let catalog = shop();
    let requests: Vec<_> = [
        "SELECT c.name, p.amount FROM customers c JOIN payments p ON p.customer_id = c.customer_id WHERE c.state = 'SP'",
        "SELECT name FROM products WHERE product_id = 'p1'",
        "SELECT state, COUNT(*) FROM customers GROUP BY state ORDER BY 2 DESC LIMIT 3",
        "UPDATE products SET name = 'x' WHERE product_id = 'p1'",
        "INSERT INTO carts (customer_id, product_id, quantity) VALUES ('c', 'p', 1)",
    ]
    .iter()
    .filter_map(|sql| {
        switchyard_core::plan_with_request(sql, &[], &catalog, Vec::new(), Vec::new())
            .ok()
            .map(|(_, r)| r)
    })
    .collect();
    assert_eq!(requests.len(), 5);
    let backends = catalog.backends.len();
    let strategy = (0..requests.len(), route(4, 3, backends));
    for_rounds(|| {
        runner("proptest-regressions/fuzz_routes.txt")
            .run(&strategy, |(i, route)| {
                let _ = validate(&route, &requests[i], &catalog);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
    });
}
