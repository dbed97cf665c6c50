//! The committed OpenAPI document describes what the server really answers: every endpoint is
//! called (successes and errors), and each response body is validated against the schema the
//! document gives for its path, method, status and content type.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use common::{Store, TestStore, plugin_wasm, start_server};
use serde_json::{Value, json};
use switchyard_config::BackendKind;

/// `~` and `/` escaped for a JSON pointer, braces percent-encoded for the URI fragment.
fn escape(s: &str) -> String {
    s.replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

struct Call {
    method: &'static str,
    /// What is requested (with any query string).
    path: String,
    /// The document's path it answers to (a template for path parameters).
    doc_path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
}

fn call(method: &'static str, path: &str, body: Option<Value>, status: u16) -> Call {
    Call {
        method,
        path: path.to_owned(),
        doc_path: path.split('?').next().unwrap_or(path).to_owned(),
        content_type: body.as_ref().map(|_| "application/json"),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        status,
    }
}

/// Validates one response against the document; returns the (path, method) it covered.
async fn check(doc: &Value, addr: SocketAddr, c: &Call) -> Option<(String, String)> {
    let r = common::http(addr, c.method, &c.path, c.content_type, c.body.clone()).await;
    assert_eq!(r.status, c.status, "{} {}: {}", c.method, c.path, r.text);
    let method = c.method.to_lowercase();
    let Some(op) = doc["paths"][c.doc_path.as_str()].get(&method) else {
        // Paths the document does not list answer with the error envelope.
        validate(doc, "#/components/schemas/Error", &r.body, c);
        return None;
    };
    let status = r.status.to_string();
    let class = format!("{}XX", &status[..1]);
    let key = if op["responses"].get(&status).is_some() {
        status
    } else {
        assert!(
            op["responses"].get(&class).is_some(),
            "{} {}: status {} is not documented",
            c.method,
            c.path,
            r.status
        );
        class
    };
    let content = &op["responses"][&key]["content"];
    if content.get("application/json").is_some() {
        let pointer = format!(
            "#/paths/{}/{method}/responses/{key}/content/application~1json/schema",
            escape(&c.doc_path)
        );
        validate(doc, &pointer, &r.body, c);
    } else {
        assert!(
            content.get("text/plain").is_some(),
            "{} {}",
            c.method,
            c.path
        );
        assert!(r.text.contains("# TYPE"), "{}", r.text);
    }
    Some((c.doc_path.clone(), method))
}

/// Where `body` breaks the schema at `pointer` (resolved inside the whole document).
fn errors_of(doc: &Value, pointer: &str, body: &Value) -> Vec<String> {
    let mut schema = doc.clone();
    schema["$ref"] = json!(pointer);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
        .expect("the document's schemas compile");
    validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

fn validate(doc: &Value, pointer: &str, body: &Value, c: &Call) {
    let errors = errors_of(doc, pointer, body);
    assert!(
        errors.is_empty(),
        "{} {} does not match {pointer}:\n{}\nbody: {body}",
        c.method,
        c.path,
        errors.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_as_the_document_says() {
    let doc: Value = serde_json::from_slice(switchyard_server::OPENAPI).unwrap();

    // Its error codes are exactly the server's.
    let documented: BTreeSet<&str> =
        doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
    let real: BTreeSet<&str> = switchyard_core::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(documented, real);

    // The validation bites: answers of the wrong shape are refused.
    let result = "#/components/schemas/QueryResult";
    for bad in [
        json!({ "columns": [], "rows": [] }),
        json!({ "columns": [{ "name": "x", "type": "money" }], "rows": [], "rows_affected": null }),
        json!({ "columns": [], "rows": [], "rows_affected": null, "extra": 1 }),
    ] {
        assert!(!errors_of(&doc, result, &bad).is_empty(), "{bad}");
    }
    let error = "#/components/schemas/Error";
    assert!(
        !errors_of(
            &doc,
            error,
            &json!({ "error": { "code": "NOPE", "message": "" } })
        )
        .is_empty()
    );

    let store = TestStore::new(Store::Sqlite);
    let config = common::with_plugins(
        common::shop_on(store.backend.clone()),
        &[("default", plugin_wasm("placement_default"))],
        Some("default"),
        &[],
    );
    let server = start_server(config.clone()).await;
    common::seed(&server.router, 1).await;
    let mut down_config = config;
    down_config.backends.insert(
        "down".to_owned(),
        common::backend(BackendKind::Redis, "redis://127.0.0.1:1/0".to_owned()),
    );
    let down = start_server(down_config).await;

    let q = |sql: &str| json!({ "sql": sql });
    let calls = [
        call(
            "POST",
            "/v1/query",
            Some(
                json!({ "sql": "SELECT customer_id, name FROM customers WHERE state = $1 LIMIT 3", "params": ["SP"] }),
            ),
            200,
        ),
        call(
            "POST",
            "/v1/query",
            Some(q(
                "UPDATE inventory SET stock = stock WHERE product_id = 'p000001'",
            )),
            200,
        ),
        call("POST", "/v1/query", Some(q("SELEC 1")), 400),
        call(
            "POST",
            "/v1/query",
            Some(q("SELECT nope FROM customers")),
            400,
        ),
        call("POST", "/v1/query", Some(json!({ "sql": 5 })), 400),
        call("GET", "/v1/query", None, 405),
        call(
            "POST",
            "/v1/explain",
            Some(q(
                "SELECT name FROM customers WHERE customer_id = 'c000001'",
            )),
            200,
        ),
        call("POST", "/v1/explain", Some(q("SELECT * FROM nope")), 400),
        call(
            "POST",
            "/v1/transaction",
            Some(json!({ "statements": [
                { "sql": "UPDATE inventory SET stock = stock - 1 WHERE product_id = 'p000001' AND stock > 0", "expect_rows": 1 },
                { "sql": "SELECT stock FROM inventory WHERE product_id = 'p000001'" },
            ], "idempotency_key": "openapi-1" })),
            200,
        ),
        call(
            "POST",
            "/v1/transaction",
            Some(json!({ "statements": [
                { "sql": "UPDATE inventory SET stock = stock + 1 WHERE product_id = 'p000001'" },
                { "sql": "UPDATE inventory SET stock = 0 WHERE product_id = 'nope'", "expect_rows": 1 },
            ] })),
            409,
        ),
        call(
            "POST",
            "/v1/transaction",
            Some(json!({ "statements": [] })),
            400,
        ),
        call("GET", "/admin/sagas", None, 200),
        call("GET", "/admin/sagas?state=committed&limit=5", None, 200),
        call("GET", "/admin/sagas?state=sleeping", None, 400),
        call("GET", "/admin/sagas?limit=0", None, 400),
        call("GET", "/admin/sagas?order=asc", None, 400),
        call("DELETE", "/admin/sagas", None, 405),
        call("GET", "/healthz", None, 200),
        call("GET", "/readyz", None, 200),
        call("GET", "/metrics", None, 200),
        call("GET", "/openapi.json", None, 200),
        call("GET", "/admin/plugins", None, 200),
        call("POST", "/admin/plugins/reload", None, 200),
        call("GET", "/admin/backends", None, 200),
        call("GET", "/admin/catalog", None, 200),
        call("GET", "/admin/config", None, 200),
        call("DELETE", "/admin/config", None, 405),
        call("GET", "/nowhere", None, 404),
    ];
    let mut covered = BTreeSet::new();
    for c in &calls {
        covered.extend(check(&doc, server.addr, c).await);
    }
    // One saga by id: the committed transaction above, found by state.
    let committed = common::http(
        server.addr,
        "GET",
        "/admin/sagas?state=committed&limit=1",
        None,
        Vec::new(),
    )
    .await;
    let listed_sagas = committed.body["sagas"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed_sagas.len(), 1, "{}", committed.body);
    assert_eq!(listed_sagas[0]["state"], "committed");
    let id = listed_sagas[0]["saga_id"].as_str().unwrap().to_owned();
    let by_id = |method: &'static str, path: String, status: u16| Call {
        method,
        path,
        doc_path: "/admin/sagas/{saga_id}".to_owned(),
        content_type: None,
        body: Vec::new(),
        status,
    };
    for c in [
        by_id("GET", format!("/admin/sagas/{id}"), 200),
        by_id("GET", "/admin/sagas/saga-nope".to_owned(), 404),
        by_id("POST", format!("/admin/sagas/{id}"), 405),
    ] {
        covered.extend(check(&doc, server.addr, &c).await);
    }
    let one = common::http(
        server.addr,
        "GET",
        &format!("/admin/sagas/{id}"),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(one.body["saga_id"], id.as_str());
    assert_eq!(one.body["idempotency_key"], "openapi-1", "{}", one.body);
    // Not ready: a backend is down.
    check(&doc, down.addr, &call("GET", "/readyz", None, 503)).await;
    check(&doc, down.addr, &call("GET", "/admin/backends", None, 200)).await;
    // A wrong content type.
    let wrong = Call {
        method: "POST",
        path: "/v1/query".to_owned(),
        doc_path: "/v1/query".to_owned(),
        content_type: Some("text/plain"),
        body: b"SELECT 1".to_vec(),
        status: 415,
    };
    check(&doc, server.addr, &wrong).await;

    let listed: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    assert_eq!(covered, listed, "every documented operation is exercised");
}
