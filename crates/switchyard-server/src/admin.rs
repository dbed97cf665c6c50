//! The admin endpoints (`/admin/*`): who may call them, and the JSON they answer — plugins,
//! sagas, backends with redacted URLs, the catalog and the configuration.

use super::*;

/// Admin endpoints: loopback callers only unless `admin.allow_remote`; a bearer token when
/// `admin.token_env` is configured (closed while the variable is unset or empty).
pub(super) async fn admin(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
    method: &Method,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    let admin_config = &state.router.config().admin;
    let token = admin_config
        .token_env
        .as_ref()
        .map(|var| std::env::var(var).unwrap_or_default());
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    admin_guard(admin_config.allow_remote, peer, token.as_deref(), given)?;
    match (method, path) {
        (&Method::GET, "/admin/plugins") => {
            Ok(json_response(StatusCode::OK, &plugins_json(&state.router)))
        }
        (&Method::POST, "/admin/plugins/reload") => {
            let outcomes = state.router.reload_plugins().await;
            let results: Vec<serde_json::Value> = outcomes
                .iter()
                .map(|o| match &o.result {
                    Ok(version) => {
                        json!({ "module": o.module, "status": "loaded", "version": version })
                    }
                    Err(e) => json!({ "module": o.module, "status": "failed", "error": e }),
                })
                .collect();
            let ok = outcomes.iter().all(|o| o.result.is_ok());
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            Ok(json_response(
                status,
                &json!({ "reloaded": results, "plugins": plugins_json(&state.router)["plugins"] }),
            ))
        }
        (&Method::GET, "/admin/backends") => Ok(json_response(
            StatusCode::OK,
            &backends_json(&state.router).await,
        )),
        (&Method::GET, "/admin/sagas") => {
            let (filter, limit) = saga_filter(req.uri().query())?;
            let sagas = state.router.sagas(filter, limit).await?;
            let list: Vec<serde_json::Value> = sagas.iter().map(saga_json).collect();
            Ok(json_response(StatusCode::OK, &json!({ "sagas": list })))
        }
        (&Method::GET, p) if p.starts_with("/admin/sagas/") => {
            let id = &p["/admin/sagas/".len()..];
            match state.router.saga(id).await? {
                Some(s) => Ok(json_response(StatusCode::OK, &saga_json(&s))),
                None => Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("no saga `{id}` in the saga log"),
                )),
            }
        }
        (&Method::GET, "/admin/catalog") => Ok(json_response(
            StatusCode::OK,
            &json!({ "tables": state.router.config().tables }),
        )),
        (&Method::GET, "/admin/config") => {
            let mut config = serde_json::to_value(state.router.config())
                .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
            redact(&mut config);
            Ok(json_response(StatusCode::OK, &config))
        }
        (
            _,
            "/admin/plugins"
            | "/admin/plugins/reload"
            | "/admin/backends"
            | "/admin/catalog"
            | "/admin/sagas"
            | "/admin/config",
        ) => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        )),
        (_, p) if p.starts_with("/admin/sagas/") => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no endpoint at {path}"),
        )),
    }
}

/// A saga as the admin endpoints show it.
fn saga_json(s: &switchyard_router::SagaSummary) -> serde_json::Value {
    json!({
        "saga_id": s.saga_id,
        "state": s.state,
        "idempotency_key": s.idempotency_key,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "steps": s.steps,
        "request": s.request,
        "outcome": s.outcome,
    })
}

/// Most sagas `GET /admin/sagas` lists.
const MAX_SAGAS: u64 = 1000;

/// `?state=...&limit=...` of `GET /admin/sagas` (limit 1..=1000, default 100).
fn saga_filter(
    query: Option<&str>,
) -> Result<(Option<switchyard_router::SagaState>, u64), ApiError> {
    let mut state = None;
    let mut limit = 100;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "state" => {
                state = Some(switchyard_router::SagaState::parse(&value).ok_or_else(|| {
                    let states: Vec<&str> = switchyard_router::SagaState::ALL
                        .iter()
                        .map(|s| s.as_str())
                        .collect();
                    ApiError::new(
                        ErrorCode::BadRequest,
                        format!("unknown saga state `{value}`; one of {}", states.join(", ")),
                    )
                })?);
            }
            "limit" => {
                limit = value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=MAX_SAGAS).contains(n))
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::BadRequest,
                            format!(
                                "limit must be an integer from 1 to {MAX_SAGAS}, not `{value}`"
                            ),
                        )
                    })?;
            }
            other => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("unknown parameter `{other}`; use state and limit"),
                ));
            }
        }
    }
    Ok((state, limit))
}

/// Every backend: a live health check (latency or error code), recent statement latency,
/// failures, in-flight statements, pool connections and rows fetched.
async fn backends_json(router: &Router) -> serde_json::Value {
    let checks = router.check().await;
    let details = router.backend_details();
    let backends: Vec<serde_json::Value> = details
        .iter()
        .map(|d| {
            let check = checks.iter().find(|c| c.backend == d.backend);
            let (healthy, check_us, error) = match check.map(|c| &c.result) {
                Some(Ok(elapsed)) => (
                    true,
                    Some(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)),
                    None,
                ),
                // The backend error's display never carries the connection string.
                Some(Err(e)) => (
                    false,
                    None,
                    Some(json!({ "code": e.code().as_str(), "message": e.to_string() })),
                ),
                None => (d.status.healthy, None, None),
            };
            json!({
                "backend": d.backend,
                "kind": d.kind,
                "healthy": healthy,
                "circuit": d.circuit.as_str(),
                "check_latency_us": check_us,
                "error": error,
                "recent": {
                    "p50_us": d.status.p50_micros,
                    "p99_us": d.status.p99_micros,
                    "error_rate": d.status.error_rate,
                    "in_flight": d.status.in_flight,
                },
                "pool": d.pool.map(|p| json!({ "open": p.size, "idle": p.idle, "active": p.size.saturating_sub(p.idle) })),
                "rows_fetched": d.rows_fetched,
            })
        })
        .collect();
    json!({ "backends": backends })
}

/// Query parameters of a URL whose values are secrets (libpq's, MySQL's, MongoDB's, Redis's).
const SECRET_PARAMETERS: [&str; 7] = [
    "password",
    "pass",
    "pwd",
    "sslpassword",
    "secret",
    "token",
    "authtoken",
];

/// Hides secrets in the effective configuration: the password of every URL (the user info
/// ends at the last `@` before the path, so a password may contain `@`) and secret query
/// parameters (`?password=...`).
fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Some(redacted) = redact_url(s) {
                *s = redacted;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        serde_json::Value::Object(map) => map.values_mut().for_each(redact),
        _ => {}
    }
}

/// `url` with its password and secret query parameters replaced by `***`, `None` when it is
/// not a URL or holds no secret.
pub(super) fn redact_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _))
                        if SECRET_PARAMETERS
                            .iter()
                            .any(|secret| name.eq_ignore_ascii_case(secret)) =>
                    {
                        format!("{name}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
            format!("{path}?{}{fragment}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    let redacted = format!("{scheme}://{authority}{tail}");
    (redacted != url).then_some(redacted)
}

/// Who may call the admin endpoints: loopback callers (IPv4-mapped IPv6 included) unless
/// `allow_remote`, and, when a token is configured, only with `Authorization: Bearer <token>`
/// (compared in constant time). A configured token that is empty (its variable unset or empty)
/// closes the endpoints instead of opening them.
pub(super) fn admin_guard(
    allow_remote: bool,
    peer: SocketAddr,
    token: Option<&str>,
    authorization: Option<&str>,
) -> Result<(), ApiError> {
    if !allow_remote && !peer.ip().to_canonical().is_loopback() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "admin endpoints answer loopback callers only",
        ));
    }
    if let Some(token) = token {
        if token.is_empty() {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "admin endpoints are closed: the variable admin.token_env names is unset or empty",
            ));
        }
        let given = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let same = given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "admin endpoints need `Authorization: Bearer <token>`",
            ));
        }
    }
    Ok(())
}

fn plugins_json(router: &Router) -> serde_json::Value {
    let plugins: Vec<serde_json::Value> = router
        .plugin_listing()
        .into_iter()
        .map(|l| {
            let loaded = l.loaded.map(|p| {
                let counters: serde_json::Map<String, serde_json::Value> = p
                    .counters
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), json!(v)))
                    .collect();
                let loaded_at = p
                    .loaded_at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                json!({
                    "name": p.name,
                    "version": p.version,
                    "contract": p.contract,
                    "sha256": p.sha256,
                    "loaded_at_unix": loaded_at,
                    "counters": counters,
                })
            });
            json!({
                "module": l.module,
                "path": l.path.display().to_string(),
                "active": l.active,
                "tenants": l.tenants,
                "loaded": loaded,
                "last_error": l.last_error,
                "reloads": { "ok": l.reloads_ok, "failed": l.reloads_failed },
            })
        })
        .collect();
    json!({ "plugins": plugins })
}
