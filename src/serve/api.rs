//! The watcher's local HTTP API: read-only, Kuma-shaped, bearer-token guarded.
//!
//! Paths follow Kuma's REST API so that tools written for a Kuma control
//! plane can read from meshseal:
//!
//! ```text
//! GET /meshes/{mesh}/secrets          list (no data)      mesh:{mesh} or admin
//! GET /meshes/{mesh}/secrets/{name}   type, mesh, name, data
//! GET /secrets                        every mesh the token may read
//! GET /global-secrets[/{name}]        admin
//! GET /meshes/{mesh}/policies[/{name}] policies, references resolved to data
//! GET /status                         generation, problems, stale files (any token)
//! GET /ready                          no token; generation only
//! GET /metrics                        any token (none with --public-metrics); counts only
//! ```
//!
//! Every response says `Cache-Control: no-store`; with `--audit FILE` every
//! request under `/meshes/`, `/secrets` and `/global-secrets` is logged
//! there (see [`super::audit`]).
//!
//! ```text
//! ```
//!
//! Writes (PUT, POST, PATCH, DELETE) answer 405: changes go through git.
//!
//! Every request goes through the same steps, in this order: authenticate
//! (exactly one `Authorization: Bearer` header naming a known token, else
//! 401 or 400), validate the mesh and resource names from the path with the
//! store's own name rules (else 400: a name like `..` or `a/b` never reaches
//! a lookup), authorize (else 403), and only then look up (404). So a token
//! cannot probe for the names of secrets it may not read.
//!
//! The server under these routes, and its limits on slow, oversized and
//! numerous clients, is [`super::http`]'s; bodies are refused here
//! ([`MAX_BODY_BYTES`]).

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use serde_json::{json, Value};

use sha2::{Digest, Sha256};

use super::audit::{self, Audit, Record};
use crate::index::{Index, Live, Secret};
use crate::kuma;
use crate::policy::{builtin_secret_names, DataSource, Policy};
use crate::scope::{validate_mesh, validate_name, Scope, SecretId, StorePath};
use crate::tokens::{TokenScope, Tokens};

/// Largest request body a request may declare. The API never reads a body
/// (it is read-only), so a request announcing more, or a chunked body of
/// unknown length, is answered 413 and its connection closed without
/// reading it; small bodies (a `PUT` by mistake) get the usual 405 hint.
pub const MAX_BODY_BYTES: u64 = 16 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The published index generation.
    pub index: Arc<Live>,
    /// The accepted tokens (swapped when the tokens file changes, and on
    /// SIGHUP).
    pub tokens: Arc<ArcSwap<Tokens>>,
    /// Where each store's root stands (`present`, or `missing` since when).
    pub roots: Arc<ArcSwap<Vec<super::sources::RootStatus>>>,
    /// Serve `/metrics` without a token.
    pub public_metrics: bool,
    /// The audit log of secret reads, if any.
    pub audit: Option<Arc<Audit>>,
}

/// The router with every route.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/meshes/{mesh}/secrets", read_only(list_mesh))
        .route("/meshes/{mesh}/secrets/{name}", read_only(get_mesh_secret))
        .route("/meshes/{mesh}/policies", read_only(list_policies))
        .route("/meshes/{mesh}/policies/{name}", read_only(get_policy))
        .route("/secrets", read_only(list_all))
        .route("/global-secrets", read_only(list_global))
        .route("/global-secrets/{name}", read_only(get_global_secret))
        .route("/status", read_only(status))
        .route("/ready", read_only(ready))
        .route("/metrics", read_only(metrics))
        .fallback(not_found_route)
        .layer(middleware::from_fn_with_state(state.clone(), no_store_and_audit))
        .layer(middleware::from_fn(refuse_bodies))
        .with_state(state)
}

/// Paths whose requests are audited: everything that names or serves
/// secrets (and policies, which carry their referenced data).
fn is_audited(path: &str) -> bool {
    path.starts_with("/meshes/") || path == "/secrets" || path.starts_with("/global-secrets")
}

/// Marks every response `Cache-Control: no-store` (secrets, and what names
/// them, must not be kept by a cache or a proxy), and audits secret reads.
async fn no_store_and_audit(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let audited = state
        .audit
        .as_ref()
        .filter(|_| is_audited(request.uri().path()))
        .map(|audit| {
            let token = presented_token(request.headers()).ok();
            let digest = token.map(|t| {
                let d = Sha256::digest(t.as_bytes());
                format!("sha256:{}", crate::recipients::hex(&d[..8]))
            });
            let scope = token.and_then(|t| state.tokens.load().authorize(t).map(ToString::to_string));
            (Arc::clone(audit), request.uri().path().to_string(), digest, scope)
        });
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some((audit, resource, token, scope)) = audited {
        let status = response.status().as_u16();
        audit.record(&Record {
            time: audit::now(),
            token,
            scope,
            resource: &resource,
            status,
            result: audit::result_of(status),
        });
    }
    response
}

/// Serves the API on `listener` until `shutdown` completes (see [`super::http`]
/// for the limits that keep hostile clients from starving others).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    super::http::serve(listener, tls, router(state), shutdown).await
}

/// Refuses request bodies the API would never read: larger than
/// [`MAX_BODY_BYTES`], or chunked (of unknown length). The connection is
/// closed after the answer, so the body is never read.
async fn refuse_bodies(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if declared > MAX_BODY_BYTES || headers.contains_key(header::TRANSFER_ENCODING) {
        let mut r = error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload Too Large",
            &format!(
                "the meshseal API reads no request bodies: send at most {MAX_BODY_BYTES} bytes, with a Content-Length"
            ),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    next.run(request).await
}

fn read_only<H, T>(handler: H) -> MethodRouter<ApiState>
where
    H: Handler<T, ApiState>,
    T: 'static,
{
    get(handler)
        .put(method_not_allowed)
        .post(method_not_allowed)
        .patch(method_not_allowed)
        .delete(method_not_allowed)
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut body = serde_json::to_vec(value).expect("JSON values serialize");
    body.push(b'\n');
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// One secret with its data. The body is built in a wiped buffer and handed
/// to hyper as the owner of the response bytes, so the value is wiped when
/// the response has been written, not left in freed memory.
fn secret_response(doc: &crate::document::Document) -> Response {
    let body = axum::body::Bytes::from_owner(kuma::to_json_bytes(doc));
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Kuma's error shape.
fn error(status: StatusCode, title: &str, detail: &str) -> Response {
    json_response(
        status,
        &json!({
            "type": "/std-errors",
            "status": status.as_u16(),
            "title": title,
            "detail": detail,
        }),
    )
}

async fn method_not_allowed() -> Response {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        "the meshseal API is read-only: change secrets with `meshseal create`, `apply` or `edit`, commit them to git, and the watcher picks them up",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

async fn not_found_route() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found", "no such API path")
}

/// Why a request is refused.
enum Denied {
    /// 400: a malformed request (names from the path, credentials).
    BadRequest(String),
    /// 401: no token, or one the tokens file does not know.
    Unauthorized(&'static str),
    /// 403: a valid token for another scope.
    Forbidden(TokenScope, Scope),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::BadRequest(detail) => error(StatusCode::BAD_REQUEST, "Bad Request", &detail),
            Denied::Unauthorized(detail) => {
                let mut r = error(StatusCode::UNAUTHORIZED, "Unauthorized", detail);
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
            Denied::Forbidden(who, what) => {
                let target = match what {
                    Scope::Global => "global secrets".to_string(),
                    Scope::Mesh(m) => format!("secrets of mesh \"{m}\""),
                };
                error(
                    StatusCode::FORBIDDEN,
                    "Access Denied",
                    &format!("token of scope \"{who}\" cannot access {target}"),
                )
            }
        }
    }
}

/// The caller's scope: exactly one `Authorization` header, scheme `Bearer`
/// (any case, RFC 9110), a known token.
fn caller(state: &ApiState, headers: &HeaderMap) -> Result<TokenScope, Denied> {
    let token = presented_token(headers)?;
    match state.tokens.load().authorize(token) {
        Some(scope) => Ok(scope.clone()),
        None => Err(Denied::Unauthorized("invalid or unknown bearer token")),
    }
}

/// The presented bearer token, not yet checked.
fn presented_token(headers: &HeaderMap) -> Result<&str, Denied> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Denied::Unauthorized("missing bearer token"));
    };
    if values.next().is_some() {
        // Two credentials are ambiguous: a proxy in front may have checked
        // the other one.
        return Err(Denied::BadRequest(
            "more than one Authorization header: send exactly one".to_string(),
        ));
    }
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim_matches(' '));
    token.ok_or(Denied::Unauthorized(
        "expected `Authorization: Bearer <token>`",
    ))
}

/// Authorizes an authenticated caller for `scope`.
fn authorize(who: TokenScope, scope: &Scope) -> Result<(), Denied> {
    if who.allows(scope) {
        Ok(())
    } else {
        Err(Denied::Forbidden(who, scope.clone()))
    }
}

/// Authenticates, then authorizes, for routes without names in the path.
fn require(state: &ApiState, headers: &HeaderMap, scope: &Scope) -> Result<(), Denied> {
    authorize(caller(state, headers)?, scope)
}

/// The path parameters, or 400 when they are not valid percent-encoded UTF-8.
fn path_params<T>(path: Result<Path<T>, PathRejection>) -> Result<T, Denied> {
    path.map(|Path(p)| p)
        .map_err(|_| Denied::BadRequest("the path is not valid percent-encoded UTF-8".to_string()))
}

/// A mesh named in the path, checked with the store's mesh name rules.
fn mesh_scope(mesh: &str) -> Result<Scope, Denied> {
    Scope::mesh(mesh).map_err(|e| Denied::BadRequest(e.to_string()))
}

/// A secret name from the path, checked with the store's name rules.
fn secret_name(name: &str) -> Result<(), Denied> {
    validate_name(name).map_err(|e| Denied::BadRequest(e.to_string()))
}

/// A policy name from the path. Policies are named after their files (and a
/// mesh's `mesh.toml` after the mesh), so the mesh name rules apply: they
/// admit every secret and mesh name and nothing path-like.
fn policy_name(name: &str) -> Result<(), Denied> {
    validate_mesh(name)
        .map_err(|_| Denied::BadRequest(format!("name: {}", crate::policy::NAME_RULE)))
}

fn list<'a>(secrets: impl Iterator<Item = &'a Arc<Secret>>) -> Response {
    let items: Vec<Value> = secrets.map(|s| kuma::to_json(&s.doc, false)).collect();
    json_response(
        StatusCode::OK,
        &json!({ "total": items.len(), "items": items, "next": Value::Null }),
    )
}

fn one(index: &Index, scope: Scope, name: &str) -> Response {
    let id = SecretId {
        scope,
        name: name.to_string(),
    };
    match index.get(&id) {
        Some(s) => secret_response(&s.doc),
        None => error(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("resource not found: {}", id.kuma_ref()),
        ),
    }
}

async fn list_mesh(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Denied> {
    let who = caller(&state, &headers)?;
    let scope = mesh_scope(&path_params(path)?)?;
    authorize(who, &scope)?;
    let index = state.index.load();
    Ok(list(index.scope_secrets(&scope)))
}

async fn get_mesh_secret(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Denied> {
    let who = caller(&state, &headers)?;
    let (mesh, name) = path_params(path)?;
    let scope = mesh_scope(&mesh)?;
    secret_name(&name)?;
    authorize(who, &scope)?;
    Ok(one(&state.index.load(), scope, &name))
}

async fn list_all(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let who = match caller(&state, &headers) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let index = state.index.load();
    list(
        index
            .secrets()
            .filter(|s| s.doc.id.scope != Scope::Global && who.allows(&s.doc.id.scope)),
    )
}

async fn list_global(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = require(&state, &headers, &Scope::Global) {
        return r.into_response();
    }
    let index = state.index.load();
    list(index.scope_secrets(&Scope::Global))
}

async fn get_global_secret(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Denied> {
    let who = caller(&state, &headers)?;
    let name = path_params(path)?;
    secret_name(&name)?;
    authorize(who, &Scope::Global)?;
    Ok(one(&state.index.load(), Scope::Global, &name))
}

fn policy_json(index: &Index, policy: &Policy, resolve: bool) -> Value {
    let problems: Vec<String> = index
        .policy_problems(policy)
        .map(|p| p.message.clone())
        .collect();
    let mut v = json!({
        "type": policy.kind.as_str(),
        "mesh": policy.mesh,
        "name": policy.name,
        "valid": problems.is_empty(),
        "problems": problems,
    });
    if resolve {
        // Builtin CA backends use their secrets by naming convention.
        let builtin: Vec<(String, DataSource)> = policy
            .backends
            .iter()
            .filter(|b| b.builtin)
            .flat_map(|b| {
                let (cert, key) = builtin_secret_names(&policy.mesh, &b.name);
                [
                    (
                        format!("mtls.backends[{}].cert", b.name),
                        DataSource::Secret(cert),
                    ),
                    (
                        format!("mtls.backends[{}].key", b.name),
                        DataSource::Secret(key),
                    ),
                ]
            })
            .collect();
        let sources: Vec<Value> = policy
            .sources
            .iter()
            .map(|s| (s.field.clone(), s.source.clone()))
            .chain(builtin)
            .map(|(field, source)| match &source {
                DataSource::Secret(name) => {
                    let id = SecretId {
                        scope: Scope::Mesh(policy.mesh.clone()),
                        name: name.clone(),
                    };
                    let mut v = json!({ "field": field, "secret": name });
                    match index.get(&id) {
                        Some(secret) => v["data"] = json!(secret.doc.data.to_base64().as_str()),
                        None => v["error"] = json!(format!("could not load data: resource not found: {}", id.kuma_ref())),
                    }
                    v
                }
                DataSource::Inline(bytes) => json!({
                    "field": field,
                    "inline": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes),
                }),
                DataSource::InlineString(text) => json!({ "field": field, "inlineString": text }),
                DataSource::File(path) => json!({ "field": field, "file": path }),
            })
            .collect();
        v["sources"] = json!(sources);
    }
    v
}

async fn list_policies(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Denied> {
    let who = caller(&state, &headers)?;
    let mesh = path_params(path)?;
    authorize(who, &mesh_scope(&mesh)?)?;
    let index = state.index.load();
    let items: Vec<Value> = index
        .policies(&mesh)
        .map(|p| policy_json(&index, p, false))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "total": items.len(), "items": items, "next": Value::Null }),
    ))
}

async fn get_policy(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Denied> {
    let who = caller(&state, &headers)?;
    let (mesh, name) = path_params(path)?;
    let scope = mesh_scope(&mesh)?;
    policy_name(&name)?;
    authorize(who, &scope)?;
    let index = state.index.load();
    let found = index.policies(&mesh).find(|p| p.name == name);
    Ok(match found {
        Some(p) => json_response(StatusCode::OK, &policy_json(&index, p, true)),
        None => error(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("resource not found: name=\"{name}\" mesh=\"{mesh}\""),
        ),
    })
}

/// The scope a problem's file belongs to, if it can be told from its path.
fn scope_of_file(file: &std::path::Path) -> Option<Scope> {
    match StorePath::classify(file) {
        StorePath::Secret(id) => Some(id.scope),
        StorePath::StraySecret { scope, .. } | StorePath::Recipients(scope) => Some(scope),
        StorePath::Mesh(mesh) | StorePath::Policy { mesh, .. } => Some(Scope::Mesh(mesh)),
        _ => None,
    }
}

async fn status(State(state): State<ApiState>, headers: HeaderMap) -> Response {
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
            "conflicts": conflicts,
            "roots": serde_json::to_value(&**state.roots.load()).unwrap_or(Value::Null),
        }),
    )
}

async fn ready(State(state): State<ApiState>) -> Response {
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

async fn metrics(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    // Counts only, but they tell how many secrets and meshes there are and
    // when they change: a token, unless the operator says otherwise.
    if !state.public_metrics {
        if let Err(denied) = caller(&state, &headers) {
            return denied.into_response();
        }
    }
    let mut r = (StatusCode::OK, super::metrics::render(&state.index.load())).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{Document, SecretData};
    use crate::identity::Identities;
    use crate::store::Store;
    use axum::body::Body;
    use tower::ServiceExt;

    const ADMIN: &str = "mst_test_admin";
    const PAYMENTS: &str = "mst_test_payments";

    fn digest(token: &str) -> String {
        use sha2::{Digest, Sha256};
        crate::recipients::hex(&Sha256::digest(token.as_bytes()))
    }

    /// A router over a store with `payments/db` and global `root-ca`.
    fn app(public_metrics: bool) -> (tempfile::TempDir, Router) {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = crate::identity::generate();
        let ids = Identities::from_age_text(&secret).unwrap();
        for scope in ["meshes/payments", "global"] {
            std::fs::create_dir_all(dir.path().join(scope)).unwrap();
            std::fs::write(dir.path().join(scope).join("recipients.txt"), format!("{public}\n"))
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        for (scope, name) in [(Scope::mesh("payments").unwrap(), "db"), (Scope::Global, "root-ca")] {
            let id = SecretId::new(scope, name).unwrap();
            store.put(&Document::new(id, SecretData::new(b"v".to_vec())), None).unwrap();
        }
        let index = Index::load(&store, &ids).unwrap();
        let tokens = Tokens::parse(&format!(
            "sha256:{} admin\nsha256:{} mesh:payments\n",
            digest(ADMIN),
            digest(PAYMENTS)
        ))
        .unwrap();
        let state = ApiState {
            index: Arc::new(ArcSwap::from_pointee(index)),
            tokens: Arc::new(ArcSwap::from_pointee(tokens)),
            roots: Arc::new(ArcSwap::from_pointee(Vec::new())),
            public_metrics,
            audit: None,
        };
        (dir, router(state))
    }

    fn call(app: &Router, method: &str, path: &str, token: Option<&str>) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let request = request.body(Body::empty()).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(app.clone().oneshot(request))
            .unwrap()
    }

    #[test]
    fn authenticate_then_validate_then_authorize_then_look_up() {
        let (_dir, app) = app(false);
        let status = |m, p, t| call(&app, m, p, t).status().as_u16();
        assert_eq!(status("GET", "/meshes/payments/secrets/db", None), 401);
        assert_eq!(status("GET", "/meshes/payments/secrets/db", Some("mst_unknown")), 401);
        assert_eq!(status("GET", "/meshes/payments/secrets/Bad_Name", Some(PAYMENTS)), 400);
        assert_eq!(status("GET", "/meshes/other/secrets/db", Some(PAYMENTS)), 403);
        assert_eq!(status("GET", "/meshes/payments/secrets/missing", Some(PAYMENTS)), 404);
        assert_eq!(status("GET", "/meshes/payments/secrets/db", Some(PAYMENTS)), 200);
        assert_eq!(status("GET", "/global-secrets/root-ca", Some(PAYMENTS)), 403);
        assert_eq!(status("GET", "/global-secrets/root-ca", Some(ADMIN)), 200);
        assert_eq!(status("PUT", "/meshes/payments/secrets/db", Some(ADMIN)), 405);
        assert_eq!(status("GET", "/ready", None), 200);
    }

    #[test]
    fn every_answer_is_not_cacheable() {
        let (_dir, app) = app(false);
        for (path, token) in [("/meshes/payments/secrets/db", Some(PAYMENTS)), ("/meshes/payments/secrets/db", None), ("/status", Some(ADMIN))] {
            let r = call(&app, "GET", path, token);
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store", "{path}");
        }
    }

    #[test]
    fn metrics_need_a_token_unless_public() {
        let (_dir, app) = app(false);
        assert_eq!(call(&app, "GET", "/metrics", None).status(), 401);
        assert_eq!(call(&app, "GET", "/metrics", Some(PAYMENTS)).status(), 200);
        let (_dir2, public) = self::app(true);
        assert_eq!(call(&public, "GET", "/metrics", None).status(), 200);
    }
}
