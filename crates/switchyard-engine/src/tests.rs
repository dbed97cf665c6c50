//! The engine over the shop catalog with rows handed in by the test (no store).

use std::str::FromStr;
use std::sync::Arc;

use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::json;
use switchyard_core::value::Value;
use switchyard_core::{Catalog, ErrorCode, LogicalType};

use crate::{Engine, EngineError, EngineLimits};

fn engine() -> Engine {
    let text = include_str!("../../../router.toml");
    let config =
        switchyard_config::parse_str(text, "router.toml", &|_| None).expect("router.toml is valid");
    Engine::new(
        Arc::new(Catalog::from_config(&config)),
        EngineLimits {
            memory_bytes: 64 << 20,
            batch_size: 1024,
        },
    )
    .expect("engine")
}

fn dec(s: &str) -> Value {
    Value::Decimal(Decimal::from_str(s).expect("decimal"))
}

async fn run(
    sql: &str,
    params: serde_json::Value,
    rows_for: impl Fn(&str) -> Vec<Vec<Value>>,
) -> Result<(Vec<String>, Vec<Vec<Value>>), EngineError> {
    let e = engine();
    let params = params.as_array().cloned().unwrap_or_default();
    let planned = e.plan(sql, &params).await?;
    let fetched = planned.scans().iter().map(|s| rows_for(&s.sql)).collect();
    let answer = planned.execute(fetched).await?;
    let names = answer.columns.iter().map(|c| c.name.clone()).collect();
    let mut rows = Vec::new();
    let mut stream = answer.rows;
    while let Some(batch) = stream.next().await {
        rows.extend(batch?);
    }
    Ok((names, rows))
}

#[tokio::test]
async fn case_runs_over_the_scanned_rows_with_postgresql_names() {
    let (names, rows) = run(
        "SELECT customer_id, CASE WHEN amount > 100 THEN 'big' ELSE 'small' END AS size \
         FROM payments WHERE customer_id = $1 ORDER BY amount",
        json!(["c7"]),
        |sql| {
            assert_eq!(
                sql,
                "SELECT \"customer_id\", \"amount\" FROM \"payments\" WHERE \"customer_id\" = $1"
            );
            vec![
                vec![Value::Text("c7".into()), dec("150.00")],
                vec![Value::Text("c7".into()), dec("20.50")],
            ]
        },
    )
    .await
    .expect("runs");
    assert_eq!(names, vec!["customer_id", "size"]);
    assert_eq!(
        rows,
        vec![
            vec![Value::Text("c7".into()), Value::Text("small".into())],
            vec![Value::Text("c7".into()), Value::Text("big".into())],
        ]
    );
}

#[tokio::test]
async fn a_count_over_a_subquery_scans_both_tables() {
    let e = engine();
    let planned = e
        .plan(
            "SELECT COUNT(*) FROM customers c WHERE NOT EXISTS \
             (SELECT 1 FROM payments p WHERE p.customer_id = c.customer_id)",
            &[],
        )
        .await
        .expect("plans");
    let tables: Vec<&str> = planned.scans().iter().map(|s| s.table.as_str()).collect();
    assert_eq!(tables.len(), 2, "{planned:?}");
    assert!(tables.contains(&"customers") && tables.contains(&"payments"));
    let fetched = planned
        .scans()
        .iter()
        .map(|s| {
            if s.table == "customers" {
                ["c1", "c2", "c3"]
                    .iter()
                    .map(|c| vec![Value::Text((*c).into())])
                    .collect()
            } else {
                vec![vec![Value::Text("c2".into())]]
            }
        })
        .collect();
    let answer = planned.execute(fetched).await.expect("executes");
    assert_eq!(answer.columns[0].name, "count");
    assert_eq!(answer.columns[0].ty, LogicalType::Int);
    let rows: Vec<_> = answer.rows.collect().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].as_ref().expect("rows"), &vec![vec![Value::Int(2)]]);
}

#[tokio::test]
async fn errors_carry_client_codes() {
    let e = engine();
    let code = |r: Result<crate::Planned, EngineError>| r.map(|_| ()).map_err(|e| e.code());
    assert_eq!(
        code(e.plan("SELECT nope FROM customers", &[]).await),
        Err(ErrorCode::UnknownColumn)
    );
    assert_eq!(
        code(e.plan("SELECT * FROM nowhere", &[]).await),
        Err(ErrorCode::UnknownTable)
    );
    assert_eq!(
        code(e.plan("SELECT (1 FROM customers", &[]).await),
        Err(ErrorCode::SqlSyntax)
    );
    assert_eq!(
        code(e.plan("DELETE FROM customers", &[]).await),
        Err(ErrorCode::Unsupported)
    );
    assert_eq!(
        code(
            e.plan("SELECT * FROM customers WHERE customer_id = $1", &[])
                .await
        ),
        Err(ErrorCode::BadParams)
    );
    assert_eq!(
        code(
            e.plan(
                "SELECT * FROM customers WHERE customer_id = $1",
                &[json!(7)]
            )
            .await
        ),
        Err(ErrorCode::BadParams)
    );
    let failed = run("SELECT 'abc'::int", json!([]), |_| Vec::new()).await;
    assert_eq!(
        failed.map(|_| ()).map_err(|e| e.code()),
        Err(ErrorCode::DataError)
    );
}

#[tokio::test]
async fn select_without_from_needs_no_scan() {
    let (names, rows) = run(
        "SELECT 1 + 1 AS two, upper('a'), CAST('7' AS int)",
        json!([]),
        |_| panic!("no scan"),
    )
    .await
    .expect("runs");
    assert_eq!(names, vec!["two", "upper", "int4"]);
    assert_eq!(
        rows,
        vec![vec![Value::Int(2), Value::Text("A".into()), Value::Int(7)]]
    );
}

#[tokio::test]
async fn output_columns_may_share_a_name_as_in_postgresql() {
    let (names, rows) = run(
        "SELECT CAST(amount AS int), amount::text FROM payments",
        json!([]),
        |_| vec![vec![dec("12.50")]],
    )
    .await
    .expect("runs");
    assert_eq!(names, vec!["amount", "amount"]);
    // PostgreSQL rounds half away from zero when casting numeric to int.
    assert_eq!(
        rows,
        vec![vec![Value::Int(13), Value::Text("12.50".into())]]
    );
}

#[tokio::test]
async fn mod_is_postgresql_s_remainder() {
    let (names, rows) = run("SELECT MOD(7, 3), mod(-7, 3) AS m", json!([]), |_| {
        panic!("no scan")
    })
    .await
    .expect("runs");
    assert_eq!(names[1], "m");
    assert_eq!(rows, vec![vec![Value::Int(1), Value::Int(-1)]]);
}

#[tokio::test]
async fn numeric_literals_are_exact_as_in_postgresql() {
    // 533.42 is a numeric, not a float: the comparison is exact.
    let (_, rows) = run(
        "SELECT payment_id FROM payments WHERE amount = 533.42 AND amount * 3 = 1600.26",
        json!([]),
        |_| vec![vec![Value::Text("p1".into()), dec("533.42")]],
    )
    .await
    .expect("runs");
    assert_eq!(rows, vec![vec![Value::Text("p1".into())]]);
}

#[tokio::test]
async fn a_rounding_cast_keeps_its_name_for_order_by() {
    let (names, rows) = run(
        "SELECT payment_id, CAST(amount AS int) FROM payments ORDER BY 2 DESC, CAST(amount AS int)",
        json!([]),
        |_| {
            vec![
                vec![Value::Text("p1".into()), dec("1.50")],
                vec![Value::Text("p2".into()), dec("3.49")],
            ]
        },
    )
    .await
    .expect("runs");
    assert_eq!(names, vec!["payment_id", "amount"]);
    assert_eq!(
        rows,
        vec![
            vec![Value::Text("p2".into()), Value::Int(3)],
            vec![Value::Text("p1".into()), Value::Int(2)],
        ]
    );
}

#[tokio::test]
async fn avg_of_decimals_rounds_its_last_digit() {
    // PostgreSQL's scale (16 fraction digits; DataFusion alone answers the input's scale + 4):
    // (0.01 + 0.01 + 0.00) / 3 = 0.0066666… rounds up in its last digit (DataFusion truncates);
    // PostgreSQL answers 1.5000000000000000 for b.
    let (names, rows) = run(
        "SELECT customer_id, AVG(amount) FROM payments GROUP BY customer_id ORDER BY customer_id",
        json!([]),
        |_| {
            [
                ("a", "0.01"),
                ("a", "0.01"),
                ("a", "0.00"),
                ("b", "2.00"),
                ("b", "1.00"),
            ]
            .iter()
            .map(|(c, a)| vec![Value::Text((*c).into()), dec(a)])
            .collect()
        },
    )
    .await
    .expect("runs");
    assert_eq!(names, vec!["customer_id", "avg"]);
    assert_eq!(
        rows,
        vec![
            vec![Value::Text("a".into()), dec("0.0066666666666667")],
            vec![Value::Text("b".into()), dec("1.5000000000000000")],
        ]
    );
}

#[tokio::test]
async fn json_operators_read_json_columns() {
    let (names, rows) = run(
        "SELECT o.items->0->>'product_id', o.items->>1 AS second, o.items->0 AS first FROM orders o",
        json!([]),
        |_| {
            vec![vec![Value::Json(
                json!([{ "product_id": "p1", "quantity": 2 }, "x"]),
            )]]
        },
    )
    .await
    .expect("runs");
    assert_eq!(names, vec!["?column?", "second", "first"]);
    assert_eq!(
        rows,
        vec![vec![
            Value::Text("p1".into()),
            Value::Text("x".into()),
            Value::Json(json!({ "product_id": "p1", "quantity": 2 })),
        ]]
    );
}

#[tokio::test]
async fn floats_compare_with_numerics_as_floats() {
    // PostgreSQL compares a float with a numeric as floats: 4.3999999999999995 is not 4.4.
    let (_, rows) = run(
        "SELECT product_id FROM products WHERE rating IN (4.4, 5.0) OR rating + 0.5 = 3.0",
        json!([]),
        |_| {
            [("a", 4.4), ("b", 4.399_999_999_999_999_5), ("c", 2.5)]
                .iter()
                .map(|(p, r)| vec![Value::Text((*p).into()), Value::Float(*r)])
                .collect()
        },
    )
    .await
    .expect("runs");
    assert_eq!(
        rows,
        vec![vec![Value::Text("a".into())], vec![Value::Text("c".into())]]
    );
}

#[tokio::test]
async fn an_average_retypes_the_expressions_above_it() {
    // The outer scan reads customer_id and amount, the subquery's amount alone.
    let rows_of = |scan: &str| {
        [("a", "0.01"), ("a", "0.02"), ("b", "2.00"), ("b", "1.00")]
            .iter()
            .map(|(c, a)| {
                if scan.contains("customer_id") {
                    vec![Value::Text((*c).into()), dec(a)]
                } else {
                    vec![dec(a)]
                }
            })
            .collect()
    };
    let (names, rows) = run(
        "SELECT customer_id, AVG(amount) * 2 AS twice, (SELECT AVG(amount) FROM payments) + 1 AS overall FROM payments GROUP BY customer_id HAVING AVG(amount) > 0.01 ORDER BY AVG(amount) DESC",
        json!([]),
        rows_of,
    )
    .await
    .expect("runs");
    assert_eq!(names, vec!["customer_id", "twice", "overall"]);
    assert_eq!(
        rows,
        vec![
            vec![
                Value::Text("b".into()),
                dec("3.0000000000000000"),
                dec("1.7575000000000000")
            ],
            vec![
                Value::Text("a".into()),
                dec("0.0300000000000000"),
                dec("1.7575000000000000")
            ],
        ]
    );
}

#[tokio::test]
async fn jsonb_array_elements_gives_a_row_per_element() {
    let (names, rows) = run(
        "SELECT o.order_id, jsonb_array_elements(o.items) FROM orders o ORDER BY 1",
        json!([]),
        |_| {
            vec![
                vec![
                    Value::Text("o1".into()),
                    Value::Json(json!([{ "product_id": "p1" }, 2])),
                ],
                vec![Value::Text("o2".into()), Value::Json(json!([]))],
                vec![Value::Text("o3".into()), Value::Json(json!(["x"]))],
            ]
        },
    )
    .await
    .expect("runs");
    assert_eq!(names, vec!["order_id", "jsonb_array_elements"]);
    assert_eq!(
        rows,
        vec![
            vec![
                Value::Text("o1".into()),
                Value::Json(json!({ "product_id": "p1" }))
            ],
            vec![Value::Text("o1".into()), Value::Json(json!(2))],
            vec![Value::Text("o3".into()), Value::Json(json!("x"))],
        ]
    );
}

#[tokio::test]
async fn percentile_cont_interpolates_as_a_float() {
    let (names, rows) = run(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY amount), percentile_cont(0.25) WITHIN GROUP (ORDER BY amount) AS q1 FROM payments",
        json!([]),
        |_| ["1.00", "2.00", "4.00", "10.00"].iter().map(|a| vec![dec(a)]).collect(),
    )
    .await
    .expect("runs");
    assert_eq!(names, vec!["percentile_cont", "q1"]);
    assert_eq!(rows, vec![vec![Value::Float(3.0), Value::Float(1.75)]]);
}

#[tokio::test]
async fn to_char_templates_it_cannot_translate_are_refused() {
    let refused = run(
        "SELECT to_char(created_at, 'YYYY \"Q\"Q') FROM orders",
        json!([]),
        |_| Vec::new(),
    )
    .await;
    assert!(
        matches!(&refused, Err(EngineError::Unsupported(m)) if m.contains("to_char") && m.contains("'YYYY \"Q\"Q'")),
        "{refused:?}"
    );
    let (_, rows) = run(
        "SELECT to_char(created_at, 'DD/MM/YYYY HH24:MI'), age(TIMESTAMP '2024-03-31', created_at) FROM orders",
        json!([]),
        |_| {
            vec![vec![Value::Timestamp(
                switchyard_core::value::parse_timestamp("2024-02-29T08:30:00Z").expect("ts"),
            )]]
        },
    )
    .await
    .expect("runs");
    assert_eq!(
        rows,
        vec![vec![
            Value::Text("29/02/2024 08:30".into()),
            Value::Text("1 mon 1 day 15:30:00".into())
        ]]
    );
}

#[tokio::test]
async fn interval_literals_and_casts_read_a_time_of_day() {
    let (_, rows) = run(
        "SELECT INTERVAL '1 day 04:05:06', '-01:30'::interval, CAST('2 days 00:00:01.5' AS interval)",
        json!([]),
        |_| Vec::new(),
    )
    .await
    .expect("runs");
    assert_eq!(
        rows,
        vec![vec![
            Value::Text("1 day 04:05:06".into()),
            Value::Text("-01:30:00".into()),
            Value::Text("2 days 00:00:01.5".into()),
        ]]
    );
}
