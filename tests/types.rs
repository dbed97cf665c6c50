//! Every logical type round-trips exactly through each SQL store: NULLs, unicode, quotes, large
//! decimals, timestamps with offsets, nested JSON, booleans, floats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{EVERY_STORE, Store, TestStore};
use serde_json::{Value as J, json};
use switchyard_config::{Config, PlacementConfig, Role, TableConfig};
use switchyard_router::Router;

fn probe_config(store: &TestStore) -> Config {
    let mut config = Config::default();
    config
        .backends
        .insert("db".to_owned(), store.backend.clone());
    let columns = [
        ("id", "int"),
        ("b", "bool"),
        ("f", "float"),
        ("d", "decimal(28,6)"),
        ("m", "decimal"),
        ("t", "timestamp"),
        ("dt", "date"),
        ("j", "json"),
        ("s", "text"),
    ];
    config.tables.insert(
        "probe".to_owned(),
        TableConfig {
            description: None,
            columns: columns
                .iter()
                .map(|(n, t)| ((*n).to_owned(), t.parse().unwrap()))
                .collect(),
            primary_key: vec!["id".to_owned()],
            placements: vec![PlacementConfig {
                backend: "db".to_owned(),
                role: Role::Primary,
                name: Some("probe_physical".to_owned()),
                columns: [("s".to_owned(), "s_text".to_owned())]
                    .into_iter()
                    .collect(),
                key_pattern: None,
                mode: None,
                ttl_seconds: None,
                scan: Default::default(),
                scan_max_rows: 10_000,
            }],
            shard_key: None,
        },
    );
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_on_every_sql_store() {
    for store in EVERY_STORE {
        let env = TestStore::new(store);
        let router = Router::from_config(probe_config(&env)).await.unwrap();
        router
            .seed_table("probe", &[], Vec::new(), 1, &|_| {})
            .await
            .unwrap();
        // SQLite keeps decimals as REAL: exact to 15 significant digits.
        let big = if store == Store::Sqlite {
            "123456789.123456"
        } else {
            "1234567890123456789012.123456"
        };
        let rows = [
            json!([1, true, 1.5e-7, big, "0.10", "2024-02-29T23:59:59.999+05:30", "2024-02-29", { "a": [1, { "b": null }], "ü": "✓" }, "héllo ✓ 'q' \"dq\" \\ % _"]),
            json!([
                2,
                false,
                -12345.678,
                "-0.000001",
                "-99999.99",
                "1970-01-01T00:00:00Z",
                "1969-12-31",
                [1, "two", 3.5],
                ""
            ]),
            json!([3, null, null, null, null, null, null, null, null]),
        ];
        for row in &rows {
            let r = router
                .query("INSERT INTO probe (id, b, f, d, m, t, dt, j, s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", row.as_array().unwrap(), &Default::default())
                .await
                .unwrap_or_else(|e| panic!("{store:?} insert: {} {}", e.code(), e.client_message()));
            assert_eq!(r.rows_affected, Some(1));
        }
        let got = router
            .query("SELECT * FROM probe ORDER BY id", &[], &Default::default())
            .await
            .unwrap()
            .to_json();
        let expected = json!([
            [1, true, 1.5e-7, if store == Store::Sqlite { "123456789.123456" } else { "1234567890123456789012.123456" }, "0.10", "2024-02-29T18:29:59.999000Z", "2024-02-29", { "a": [1, { "b": null }], "ü": "✓" }, "héllo ✓ 'q' \"dq\" \\ % _"],
            [2, false, -12345.678, "-0.000001", "-99999.99", "1970-01-01T00:00:00.000000Z", "1969-12-31", [1, "two", 3.5], ""],
            [3, null, null, null, null, null, null, null, null],
        ]);
        assert_eq!(got["rows"], expected, "{store:?}");
        let types: Vec<J> = got["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].clone())
            .collect();
        assert_eq!(
            types,
            [
                "int",
                "bool",
                "float",
                "decimal",
                "decimal",
                "timestamp",
                "date",
                "json",
                "text"
            ]
            .map(J::from),
            "{store:?}"
        );

        // Typed comparisons work on the stored representation.
        let found = router
            .query(
                "SELECT id FROM probe WHERE t < $1 AND b = false AND s LIKE '' AND m < 0",
                &[json!("2000-01-01T00:00:00Z")],
                &Default::default(),
            )
            .await
            .unwrap();
        assert_eq!(found.to_json()["rows"], json!([[2]]), "{store:?}");
        // Dates compare as days on every store, with a literal, a parameter and in the engine
        // (interval arithmetic), and the invalid date is refused with its column.
        let days = router
            .query(
                "SELECT id FROM probe WHERE dt >= '1970-01-01' AND dt < $1",
                &[json!("2024-03-01")],
                &Default::default(),
            )
            .await
            .unwrap();
        assert_eq!(days.to_json()["rows"], json!([[1]]), "{store:?}");
        let engine = router
            .query(
                "SELECT id, dt + interval '1 day' AS next, EXTRACT(YEAR FROM dt) AS y FROM probe WHERE dt > DATE '1969-12-31' - interval '1 month' ORDER BY id",
                &[],
                &Default::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{store:?} engine: {}", e.client_message()));
        let answer = engine.to_json();
        assert_eq!(
            answer["rows"],
            json!([[1, "2024-03-01", 2024], [2, "1970-01-01", 1969]]),
            "{store:?}"
        );
        let bad = router
            .query(
                "INSERT INTO probe (id, dt) VALUES (4, $1)",
                &[json!("2024-02-30")],
                &Default::default(),
            )
            .await
            .err()
            .map(|e| (e.code().as_str(), e.client_message()));
        assert!(
            matches!(&bad, Some((code, m)) if *code == "BAD_PARAMS" && m.contains("not a date")),
            "{store:?}: {bad:?}"
        );
        let like = router
            .query(
                "SELECT id FROM probe WHERE s LIKE $1",
                &[json!("%\\%%")],
                &Default::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            like.to_json()["rows"],
            json!([[1]]),
            "{store:?}: LIKE escapes"
        );
        let case = router
            .query(
                "SELECT id FROM probe WHERE s LIKE 'H%'",
                &[],
                &Default::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            case.to_json()["rows"],
            json!([]),
            "{store:?}: LIKE is case-sensitive"
        );
    }
}
