//! The HTTP API (hyper 1.x): `POST /v1/query`, `POST /v1/explain`, `GET /healthz`, `GET /readyz`.
//!
//! Invariant: this is the only crate that knows HTTP; every answer is JSON, every failure is
//! `{"error": {"code", "message", "position"?}}` with a status from [`status_of`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use switchyard_core::routing::{Input, MergeOp, Route};
use switchyard_core::{Catalog, ErrorCode, Position};
use switchyard_router::{Planner, Router, RouterError, TxRequest};
use tokio::net::TcpListener;
use tracing::Instrument;

use admin::admin;

/// The HTTP status for each error code (the table in the README).
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::SqlSyntax
        | ErrorCode::Unsupported
        | ErrorCode::UnknownTable
        | ErrorCode::UnknownColumn
        | ErrorCode::AmbiguousColumn
        | ErrorCode::TypeMismatch
        | ErrorCode::BadGrouping
        | ErrorCode::BadParams
        | ErrorCode::NeedsKey => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::NoRoute | ErrorCode::QueryTooLarge | ErrorCode::DataError => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ErrorCode::ConstraintViolation
        | ErrorCode::PreconditionFailed
        | ErrorCode::TransactionAborted
        | ErrorCode::IdempotencyConflict => StatusCode::CONFLICT,
        ErrorCode::TransactionInDoubt => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::BackendError => StatusCode::BAD_GATEWAY,
        ErrorCode::BackendUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::PluginTrapped
        | ErrorCode::PluginMemory
        | ErrorCode::RouteInvalid
        | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::PluginTimeout => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// The body of `/v1/query` and `/v1/explain`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    params: Vec<serde_json::Value>,
    #[serde(default)]
    context: HashMap<String, String>,
}

/// A failure on its way to the client.
struct ApiError {
    code: ErrorCode,
    message: String,
    position: Option<Position>,
    /// More members of the error object (transactions: `saga_id`, `statement`, `cause`).
    details: Option<Box<serde_json::Value>>,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            position: None,
            details: None,
        }
    }
}

impl From<RouterError> for ApiError {
    fn from(e: RouterError) -> Self {
        let details = match &e {
            RouterError::Transaction(f) => Some(Box::new(f.details())),
            RouterError::CircuitOpen { retry_after_ms, .. } => {
                Some(Box::new(json!({ "retry_after_ms": retry_after_ms })))
            }
            _ => None,
        };
        Self {
            code: e.code(),
            message: e.client_message(),
            position: e.position(),
            details,
        }
    }
}

type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut error = json!({ "code": e.code.as_str(), "message": e.message });
    if let Some(p) = e.position {
        error["position"] = json!({ "line": p.line, "column": p.column });
    }
    if let Some(serde_json::Value::Object(details)) = e.details.as_deref() {
        for (k, v) in details {
            error[k.as_str()] = v.clone();
        }
    }
    let mut resp = json_response(status_of(e.code), &json!({ "error": error }));
    // A backend failing fast says when to come back, in whole seconds (rounded up).
    if let Some(ms) = error
        .get("retry_after_ms")
        .and_then(serde_json::Value::as_u64)
        && let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string())
    {
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    resp
}

/// The state shared by all connections.
#[derive(Debug, Clone)]
pub struct AppState {
    router: Arc<Router>,
    max_body_bytes: u64,
}

impl AppState {
    /// State over a router; the body limit comes from its `[server]` section.
    pub fn new(router: Arc<Router>) -> Self {
        let max_body_bytes = router.config().server.max_body_bytes;
        Self {
            router,
            max_body_bytes,
        }
    }
}

/// Accepts connections on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    state.router.start_background_tasks();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req, peer).await) }
            });
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, peer = %peer, "connection ended with an error");
            }
        });
    }
}

/// The request id: the client's `x-request-id` when it is a short visible-ASCII token, else a
/// fresh random one.
fn request_id(req: &Request<Incoming>) -> String {
    use std::hash::{BuildHasher, Hasher};
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(
            || {
                // RandomState is seeded randomly per process and per instance.
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u64(NEXT_REQUEST.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                format!("{:016x}", h.finish())
            },
            str::to_owned,
        )
}

const REQUEST_ID: &str = "x-request-id";
/// The OpenAPI 3.1 description of this API, served at `GET /openapi.json`.
pub const OPENAPI: &[u8] = include_bytes!("../openapi.json");
static NEXT_REQUEST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn handle(state: AppState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let id = request_id(&req);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path()
    );
    let mut response = route_request(state, req, peer).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

async fn route_request(
    state: AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let result = match (method.clone(), path.as_str()) {
        (Method::POST, "/v1/query") => query(&state, req, false).await,
        (Method::POST, "/v1/explain") => query(&state, req, true).await,
        (Method::POST, "/v1/transaction") => transaction(&state, req).await,
        (Method::GET, "/healthz") => Ok(json_response(StatusCode::OK, &json!({ "status": "ok" }))),
        (Method::GET, "/readyz") => Ok(ready(&state).await),
        (Method::GET, "/openapi.json") => {
            let mut resp = Response::new(Full::new(Bytes::from_static(OPENAPI)).boxed_unsync());
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(resp)
        }
        (Method::GET, "/metrics") => {
            let mut resp =
                Response::new(Full::new(Bytes::from(state.router.render_metrics())).boxed_unsync());
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(resp)
        }
        (_, p) if p.starts_with("/admin/") => admin(&state, req, peer, &method, p).await,
        (
            _,
            "/v1/query" | "/v1/explain" | "/v1/transaction" | "/healthz" | "/readyz" | "/metrics"
            | "/openapi.json",
        ) => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no endpoint at {path}"),
        )),
    };
    let response = result.unwrap_or_else(|e| error_response(&e));
    let endpoint = match path.as_str() {
        "/v1/query" => "query",
        "/v1/explain" => "explain",
        "/v1/transaction" => "transaction",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        "/openapi.json" => "openapi",
        p if p.starts_with("/admin/") => "admin",
        _ => "other",
    };
    let status_class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    state
        .router
        .metrics()
        .http_requests
        .with_label_values(&[endpoint, status_class])
        .inc();
    tracing::debug!(method = %method, path = %path, status = response.status().as_u16(), "request served");
    response
}

async fn read_json<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("expected content-type application/json, got `{content_type}`"),
        ));
    }
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds {} bytes", state.max_body_bytes),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes) {
        return Err(too_large());
    }
    let limit = usize::try_from(state.max_body_bytes).unwrap_or(usize::MAX);
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err)
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(too_large());
        }
        Err(err) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("cannot read request body: {err}"),
            ));
        }
    };
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("invalid request body: {e}")))
}

async fn query(
    state: &AppState,
    req: Request<Incoming>,
    explain: bool,
) -> Result<Response<Body>, ApiError> {
    let ndjson = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    let body: QueryRequest = read_json(state, req).await?;
    if explain {
        let e = state
            .router
            .explain(&body.sql, &body.params, &body.context)
            .await?;
        let catalog = state.router.catalog();
        let mut answer = json!({
            "route": route_json(&e.route, catalog),
            "planner": planner_json(&e.planner),
            "fragments": fragments_json(&e.fragments),
            "logical_plan": e.logical,
        });
        if let Some(engine) = &e.engine {
            let scans: Vec<serde_json::Value> = engine
                .scans
                .iter()
                .map(|s| {
                    json!({
                        "table": s.table,
                        "statement": s.sql,
                        "params": s.params,
                        "route": route_json(&s.explain.route, catalog),
                        "planner": planner_json(&s.explain.planner),
                    })
                })
                .collect();
            answer["route"] = json!({ "kind": "engine", "scans": scans.len() });
            answer["engine"] = json!({ "plan": engine.plan, "scans": scans });
        }
        return Ok(json_response(StatusCode::OK, &answer));
    }
    let result = state
        .router
        .query_stream(&body.sql, &body.params, &body.context)
        .await?;
    Ok(stream_result(result, ndjson))
}

/// `POST /v1/transaction`: the statements as one saga.
async fn transaction(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let body: TxRequest = read_json(state, req).await?;
    let outcome = state.router.transaction(&body).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "saga_id": outcome.saga_id,
            "status": "committed",
            "replayed": outcome.replayed,
            "results": outcome.results,
        }),
    ))
}

async fn ready(state: &AppState) -> Response<Body> {
    let health = state.router.check().await;
    let all_ok = health.iter().all(|h| h.result.is_ok());
    let backends: Vec<serde_json::Value> = health
        .iter()
        .map(|h| match &h.result {
            Ok(latency) => json!({
                "backend": h.backend, "kind": h.kind, "status": "up",
                "latency_ms": latency.as_secs_f64() * 1000.0,
            }),
            Err(e) => json!({ "backend": h.backend, "kind": h.kind, "status": "down", "error": e.to_string() }),
        })
        .collect();
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &json!({ "status": if all_ok { "ready" } else { "not_ready" }, "backends": backends }),
    )
}

fn input_json(i: Input) -> serde_json::Value {
    match i {
        Input::Fragment(f) => json!({ "fragment": f }),
        Input::Node(n) => json!({ "node": n }),
    }
}

/// The native statement of each fragment, as `/v1/explain` shows them.
fn fragments_json(fragments: &[switchyard_router::ExplainedFragment]) -> Vec<serde_json::Value> {
    fragments
        .iter()
        .map(|f| {
            let params: Vec<serde_json::Value> = f
                .native
                .params
                .iter()
                .map(|v| v.to_json(switchyard_core::LogicalType::Text))
                .collect();
            json!({
                "fragment": f.fragment,
                "note": f.note,
                "backend": f.backend,
                "backend_kind": f.backend_kind,
                "language": f.native.language,
                "statement": f.native.text,
                "params": params,
            })
        })
        .collect()
}

/// The route as `/v1/explain` shows it: backends by name, merge nodes with their inputs.
fn route_json(route: &Route, catalog: &Catalog) -> serde_json::Value {
    let name = |id: usize| {
        catalog
            .backends
            .get_index(id)
            .map_or("?", |(n, _)| n.as_str())
    };
    let fragments: Vec<serde_json::Value> = route
        .fragments
        .iter()
        .map(|f| json!({ "backend": name(f.backend), "accesses": f.accesses }))
        .collect();
    let nodes: Vec<serde_json::Value> = route
        .nodes
        .iter()
        .map(|n| {
            let mut node = json!({ "op": n.op.as_str(), "inputs": n.inputs.iter().map(|i| input_json(*i)).collect::<Vec<_>>() });
            match &n.op {
                MergeOp::HashJoin { edge } => node["join_edge"] = json!(edge),
                MergeOp::FirstHit { fill, ttl_seconds } => {
                    node["fill"] = json!(fill);
                    node["ttl_seconds"] = json!(ttl_seconds);
                }
                MergeOp::TopK { limit } => node["limit"] = json!(limit),
                _ => {}
            }
            node
        })
        .collect();
    let mut out = json!({
        "kind": if route.as_single().is_some() { "single" } else { "merge" },
        "fragments": fragments,
        "nodes": nodes,
        "root": input_json(route.root),
    });
    if let Some(b) = route.as_single() {
        out["backend"] = json!(name(b));
    }
    if let Some(w) = &route.write {
        out["write"] = json!({
            "targets": w.targets.iter().map(|b| name(*b)).collect::<Vec<_>>(),
            "invalidate": w.invalidate.iter().map(|b| name(*b)).collect::<Vec<_>>(),
        });
    }
    out
}

fn planner_json(p: &Planner) -> serde_json::Value {
    match p {
        Planner::Default => json!({ "kind": "default" }),
        Planner::Plugin {
            module,
            name,
            version,
        } => {
            json!({ "kind": "plugin", "module": module, "name": name, "version": version })
        }
        Planner::Fallback {
            name,
            version,
            error,
        } => {
            json!({ "kind": "fallback", "plugin": name, "version": version, "error": error.as_str() })
        }
    }
}

/// Serializes the rows of a streamed answer, counting them for the trailer.
struct Encoder {
    types: Vec<switchyard_core::LogicalType>,
    ndjson: bool,
    rows_affected: Option<u64>,
    row_count: u64,
}

impl Encoder {
    /// Appends `rows` to `out`, each written straight from its values (no JSON tree).
    fn rows(&mut self, rows: &[Vec<switchyard_core::Value>], out: &mut Vec<u8>) {
        for row in rows {
            if !self.ndjson && self.row_count > 0 {
                out.push(b',');
            }
            self.row_count += 1;
            // Writing to a Vec fails only on a serializer error, which these values never
            // raise (non-finite floats are null, JSON values are already valid).
            let _ = serde_json::to_writer(
                &mut *out,
                &switchyard_core::value::JsonRow(row, &self.types),
            );
            if self.ndjson {
                out.push(b'\n');
            }
        }
    }

    /// The end of the document: the trailer, or the error that cut the answer short.
    fn tail(&self, error: Option<ApiError>) -> String {
        let error = error.map(|e| json!({ "code": e.code.as_str(), "message": e.message }));
        match (self.ndjson, error) {
            (true, None) => format!(
                "{}\n",
                json!({ "row_count": self.row_count, "rows_affected": self.rows_affected })
            ),
            (false, None) => format!("],\"rows_affected\":{}}}", json!(self.rows_affected)),
            (true, Some(e)) => format!("{}\n", json!({ "error": e, "row_count": self.row_count })),
            (false, Some(e)) => format!("],\"error\":{e}}}"),
        }
    }
}

/// Rows per chunk of a streamed answer.
const ROWS_PER_CHUNK: usize = 512;

/// Sends an answer: one body with its length when the router has it whole (every point
/// lookup), else chunked transfer encoding, serializing [`ROWS_PER_CHUNK`] rows at a time as
/// they arrive. The JSON document `{"columns", "rows", "rows_affected"}`, or NDJSON (a
/// `columns` line, one JSON array per row, a `row_count`/`rows_affected` trailer line). A store
/// failing midway (the status line is sent by then) ends the document with an `error` member
/// (JSON) or an `{"error": ...}` line (NDJSON) instead of the trailer, so a cut answer is never
/// taken for a complete one. A client that goes away drops the stream, which cancels the
/// statement.
fn stream_result(answer: switchyard_router::Answer, ndjson: bool) -> Response<Body> {
    let columns: Vec<serde_json::Value> = answer
        .columns
        .iter()
        .map(|c| json!({ "name": c.name, "type": c.ty.name() }))
        .collect();
    let mut head = Vec::with_capacity(256);
    if ndjson {
        head.extend_from_slice(json!({ "columns": columns }).to_string().as_bytes());
        head.push(b'\n');
    } else {
        head.extend_from_slice(b"{\"columns\":");
        head.extend_from_slice(serde_json::Value::Array(columns).to_string().as_bytes());
        head.extend_from_slice(b",\"rows\":[");
    }
    let mut encoder = Encoder {
        types: answer.columns.iter().map(|c| c.ty).collect(),
        ndjson,
        rows_affected: answer.rows_affected,
        row_count: 0,
    };
    let body = match answer.rest {
        None => {
            let mut out = head;
            encoder.rows(&answer.first, &mut out);
            out.extend_from_slice(encoder.tail(None).as_bytes());
            Full::new(Bytes::from(out)).boxed_unsync()
        }
        Some(rest) => {
            let mut chunks = vec![Bytes::from(head)];
            for rows in answer.first.chunks(ROWS_PER_CHUNK) {
                let mut out = Vec::new();
                encoder.rows(rows, &mut out);
                chunks.push(Bytes::from(out));
            }
            let more =
                futures::stream::unfold((Some(rest), encoder), |(rest, mut encoder)| async move {
                    let mut rest = rest?;
                    match rest.next().await {
                        Some(Ok(rows)) => {
                            let mut out = Vec::new();
                            encoder.rows(&rows, &mut out);
                            Some((Bytes::from(out), (Some(rest), encoder)))
                        }
                        Some(Err(e)) => {
                            let end = encoder.tail(Some(ApiError::from(e)));
                            Some((Bytes::from(end), (None, encoder)))
                        }
                        None => Some((Bytes::from(encoder.tail(None)), (None, encoder))),
                    }
                });
            let chunks = futures::stream::iter(chunks)
                .chain(more)
                .map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b)));
            StreamBody::new(chunks).boxed_unsync()
        }
    };
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if ndjson {
            "application/x-ndjson"
        } else {
            "application/json"
        }),
    );
    resp
}

mod admin;
#[cfg(test)]
mod tests;
