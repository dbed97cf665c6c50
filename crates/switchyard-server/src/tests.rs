//! Unit tests of the server: admin access, URL redaction, and the request-body fuzz target.

use super::admin::{admin_guard, redact_url};
use super::*;

fn code(r: Result<(), ApiError>) -> Option<&'static str> {
    r.err().map(|e| e.code.as_str())
}

#[test]
fn admin_callers_are_loopback_and_carry_the_token() {
    let local: SocketAddr = "127.0.0.1:5000".parse().unwrap_or_else(|_| unreachable!());
    let local6: SocketAddr = "[::1]:5000".parse().unwrap_or_else(|_| unreachable!());
    let remote: SocketAddr = "10.1.2.3:5000".parse().unwrap_or_else(|_| unreachable!());
    assert_eq!(code(admin_guard(false, local, None, None)), None);
    assert_eq!(code(admin_guard(false, local6, None, None)), None);
    assert_eq!(
        code(admin_guard(false, remote, None, None)),
        Some("FORBIDDEN")
    );
    assert_eq!(code(admin_guard(true, remote, None, None)), None);
    // A configured token is required, from anywhere.
    let t = Some("s3cret");
    assert_eq!(
        code(admin_guard(false, local, t, None)),
        Some("UNAUTHORIZED")
    );
    assert_eq!(
        code(admin_guard(false, local, t, Some("Bearer s3cre"))),
        Some("UNAUTHORIZED")
    );
    assert_eq!(
        code(admin_guard(false, local, t, Some("s3cret"))),
        Some("UNAUTHORIZED")
    );
    assert_eq!(
        code(admin_guard(false, local, t, Some("Bearer s3cret"))),
        None
    );
    assert_eq!(
        code(admin_guard(true, remote, t, Some("Bearer wrong!"))),
        Some("UNAUTHORIZED")
    );
    assert_eq!(
        code(admin_guard(true, remote, t, Some("Bearer s3cret"))),
        None
    );
    // An empty token closes the endpoints, whatever is presented.
    assert_eq!(
        code(admin_guard(false, local, Some(""), Some("Bearer "))),
        Some("UNAUTHORIZED")
    );
    assert_eq!(
        code(admin_guard(false, local, Some(""), None)),
        Some("UNAUTHORIZED")
    );
    // A dual-stack listener sees IPv4 loopback callers as IPv4-mapped IPv6.
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000"
        .parse()
        .unwrap_or_else(|_| unreachable!());
    assert_eq!(code(admin_guard(false, mapped, None, None)), None);
    let mapped_remote: SocketAddr = "[::ffff:10.1.2.3]:5000"
        .parse()
        .unwrap_or_else(|_| unreachable!());
    assert_eq!(
        code(admin_guard(false, mapped_remote, None, None)),
        Some("FORBIDDEN")
    );
    // Remote refusal comes first, token or not.
    assert_eq!(
        code(admin_guard(false, remote, t, Some("Bearer s3cret"))),
        Some("FORBIDDEN")
    );
}

#[test]
fn urls_lose_their_secrets() {
    let cases = [
        (
            "postgres://u:p@h:5432/db",
            Some("postgres://u:***@h:5432/db"),
        ),
        ("postgres://u:p@ss@h/db", Some("postgres://u:***@h/db")),
        (
            "postgres://h/db?user=u&password=p&sslmode=require",
            Some("postgres://h/db?user=u&password=***&sslmode=require"),
        ),
        ("mysql://u@h/db?PWD=x#f", Some("mysql://u@h/db?PWD=***#f")),
        ("redis://h:6379/0", None),
        ("sqlite://data/shop.db?mode=rwc", None),
        ("not a url", None),
    ];
    for (url, want) in cases {
        assert_eq!(redact_url(url).as_deref(), want, "{url}");
    }
}

/// Request bodies, arbitrary bytes and JSON nested or wide without bound, parse into a
/// request or a `BAD_REQUEST`, never a panic or a stack overflow (serde_json stops at 128
/// levels; the SQL inside is fuzzed in `switchyard-router`).
#[test]
fn request_bodies_never_panic() {
    use proptest::prelude::*;
    let json_value = proptest::arbitrary::any::<String>()
        .prop_map(serde_json::Value::String)
        .prop_recursive(8, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
                proptest::collection::hash_map("[a-z_]{0,8}", inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        });
    let bodies = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        json_value.prop_map(|v| v.to_string().into_bytes()),
        (json_value_shapes(), 0usize..100_000).prop_map(|(shape, n)| shape(n).into_bytes()),
    ];
    let cases = std::env::var("SWITCHYARD_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(400);
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    });
    // SWITCHYARD_FUZZ_SECONDS: rounds of fresh random cases until that much time passed.
    let seconds = std::env::var("SWITCHYARD_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        runner
            .run(&bodies, |body| {
                let _ = serde_json::from_slice::<QueryRequest>(&body);
                let _ = serde_json::from_slice::<switchyard_router::TxRequest>(&body);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        if std::time::Instant::now() >= deadline {
            break;
        }
        runner = proptest::test_runner::TestRunner::new(runner.config().clone());
    }
}

/// Bodies `n` levels deep or `n` items wide in each field of a request.
fn json_value_shapes() -> impl proptest::strategy::Strategy<Value = fn(usize) -> String> {
    proptest::sample::select(vec![
        (|n| {
            format!(
                "{{\"sql\": \"SELECT 1\", \"params\": {}{}}}",
                "[".repeat(n),
                "]".repeat(n)
            )
        }) as fn(usize) -> String,
        |n| {
            format!(
                "{{\"sql\": \"SELECT 1\", \"params\": [{}1]}}",
                "1, ".repeat(n)
            )
        },
        |n| {
            format!(
                "{{\"sql\": \"SELECT 1\", \"context\": {{\"a\": {}}}}}",
                "{\"b\": ".repeat(n)
            )
        },
        |n| {
            format!(
                "{{\"statements\": [{}]}}",
                "{\"sql\": \"SELECT 1\"}, ".repeat(n)
            )
        },
    ])
}
