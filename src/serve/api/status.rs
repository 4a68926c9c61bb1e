//! `/status`, `/ready` and `/metrics`: what the watcher is serving, for
//! operators and probes; counts and file names, never data.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{caller, error, json_response, ApiState};
use crate::scope::{Scope, StorePath};
use crate::tokens::TokenScope;

/// The scope a problem's file belongs to, if it can be told from its path.
fn scope_of_file(file: &std::path::Path) -> Option<Scope> {
    match StorePath::classify(file) {
        StorePath::Secret(id) => Some(id.scope),
        StorePath::StraySecret { scope, .. } | StorePath::Recipients(scope) => Some(scope),
        StorePath::Mesh(mesh) | StorePath::Policy { mesh, .. } => Some(Scope::Mesh(mesh)),
        _ => None,
    }
}

pub(super) async fn status(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let who = match caller(&state, &headers) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let index = state.index.load();
    let visible = |scope: Option<Scope>| match scope {
        Some(s) => who.allows(&s),
        None => who == TokenScope::Admin,
    };
    let problems: Vec<Value> = index
        .problems()
        .filter(|p| visible(p.file.as_deref().and_then(scope_of_file)))
        .map(|p| serde_json::to_value(p).expect("problems serialize"))
        .collect();
    let stale: Vec<Value> = index
        .stale()
        .filter(|id| who.allows(&id.scope))
        .map(|id| {
            let mut v = json!({ "type": id.scope.resource_type(), "name": id.name });
            if let Some(m) = id.scope.mesh_name() {
                v["mesh"] = json!(m);
            }
            v
        })
        .collect();
    // Secrets whose current version the trust root refuses (SPEC 9): the
    // reason code, and whether a last good version is served meanwhile.
    let refused: Vec<Value> = index
        .refused()
        .filter(|r| who.allows(&r.id.scope))
        .map(|r| {
            let mut v = json!({
                "type": r.id.scope.resource_type(),
                "name": r.id.name,
                "file": r.problem.file,
                "code": r.problem.code,
                "message": r.problem.message,
                "hint": r.problem.hint,
                "since": time::OffsetDateTime::from(r.since)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                "serving": if r.served { "last-good" } else { "none" },
            });
            if let Some(m) = r.id.scope.mesh_name() {
                v["mesh"] = json!(m);
            }
            v
        })
        .collect();
    let conflicts: Vec<String> = index
        .conflicts()
        .iter()
        .filter(|id| who.allows(&id.scope))
        .map(|id| format!("resource already exists: {}", id.kuma_ref()))
        .collect();
    let secrets = index
        .secrets()
        .filter(|s| who.allows(&s.doc.id.scope))
        .count();
    json_response(
        StatusCode::OK,
        &json!({
            "generation": index.generation(),
            "secrets": secrets,
            "healthy": problems.is_empty(),
            "problems": problems,
            "stale": stale,
            "refused": refused,
            "conflicts": conflicts,
            "roots": serde_json::to_value(&**state.roots.load()).unwrap_or(Value::Null),
        }),
    )
}

pub(super) async fn ready(State(state): State<ApiState>) -> Response {
    let generation = state.index.load().generation();
    if generation == 0 {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not Ready",
            "the store is still loading",
        );
    }
    json_response(
        StatusCode::OK,
        &json!({ "ready": true, "generation": generation }),
    )
}

pub(super) async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    // Counts only, but they tell how many secrets and meshes there are and
    // when they change: a token, unless the operator says otherwise.
    let who = caller(&state, &headers);
    if !state.public_metrics {
        if let Err(denied) = who {
            return denied.into_response();
        }
    }
    let index = state.index.load_full();
    let mut text = crate::serve::metrics::render(&index);
    // Certificate expiry names secrets: only those the caller's token may
    // read, none without a token (`--public-metrics`).
    if let Ok(who) = who {
        let expiries = crate::certs::served().expiries(&index);
        let visible: Vec<_> = expiries
            .iter()
            .filter(|e| who.allows(&e.id.scope))
            .cloned()
            .collect();
        text.push_str(&crate::certs::render(&visible, crate::certs::unix_now()));
    }
    if let Some(sds) = &state.sds {
        text.push_str(&sds.snapshot().render());
    }
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
