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

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use futures_util::future::{BoxFuture, Either};
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};

use sha2::{Digest, Sha256};

use super::audit::{self, Audit, Record};
use crate::index::{Index, Live, Secret};
use crate::kuma;

use crate::scope::{validate_mesh, validate_name, Scope, SecretId};
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
    /// Where each store's root stands (`present`, or `missing` or `refused`
    /// since when).
    pub roots: Arc<ArcSwap<Vec<super::sources::RootStatus>>>,
    /// Serve `/metrics` without a token.
    pub public_metrics: bool,
    /// The audit log of secret reads, if any.
    pub audit: Option<Arc<Audit>>,
    /// The SDS server's counters, when it runs (shown on `/metrics`).
    pub sds: Option<Arc<crate::serve::sds::SdsMetrics>>,
}

/// The API's service: [`Guard`] around the router, and the one request that
/// is made far more often than any other, a read of one mesh secret,
/// answered without the router (see [`Api::call`]).
#[derive(Clone)]
pub struct Api {
    router: TowerToHyperService<Router>,
    state: ApiState,
}

/// Every route, behind [`Guard`].
pub fn router(state: ApiState) -> Api {
    let router = Router::new()
        .route("/meshes/{mesh}/secrets", read_only(list_mesh))
        .route("/meshes/{mesh}/secrets/{name}", read_only(get_mesh_secret))
        .route(
            "/meshes/{mesh}/policies",
            read_only(policies::list_policies),
        )
        .route(
            "/meshes/{mesh}/policies/{name}",
            read_only(policies::get_policy),
        )
        .route("/secrets", read_only(list_all))
        .route("/global-secrets", read_only(list_global))
        .route("/global-secrets/{name}", read_only(get_global_secret))
        .route("/status", read_only(status::status))
        .route("/ready", read_only(status::ready))
        .route("/metrics", read_only(status::metrics))
        .fallback(not_found_route)
        .with_state(state.clone());
    Api {
        router: TowerToHyperService::new(router),
        state,
    }
}

impl<B> hyper::service::Service<axum::http::Request<B>> for Api
where
    B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
    <B as http_body::Body>::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        Ready<Result<Response, Infallible>>,
        BoxFuture<'static, Result<Response, Infallible>>,
    >;

    /// A plain `GET /meshes/{mesh}/secrets/{name}` (no percent-encoding in
    /// the path, which is then exactly what the router would extract) goes
    /// straight to [`mesh_secret`], the route's own handler code: the
    /// router's matching, its path parameters (an allocation each, kept in
    /// the request's extensions) and its boxed futures were a third of the
    /// instructions of a secret read. Any other request takes the router.
    /// Both go through [`Guard`].
    fn call(&self, request: axum::http::Request<B>) -> Self::Future {
        let request = request.map(axum::body::Body::new);
        if let Some(refused) = refuse_body(request.headers()) {
            return Either::Left(ready(Ok(no_store(refused))));
        }
        let guard = Guard::start(&self.state, &request);
        if let Some((mesh, name)) = plain_secret_read(&request) {
            let response = mesh_secret(&self.state, request.headers(), mesh, name)
                .unwrap_or_else(IntoResponse::into_response);
            return Either::Left(ready(Ok(guard.finish(response))));
        }
        let routed = self.router.call(request);
        Either::Right(Box::pin(async move {
            let response = match routed.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(guard.finish(response))
        }))
    }
}

/// The mesh and secret names of `GET /meshes/{mesh}/secrets/{name}` when
/// the path holds them verbatim: no `%` (the router would decode it) and
/// neither name empty nor containing `/` (the router would not match).
fn plain_secret_read(request: &Request) -> Option<(&str, &str)> {
    if request.method() != axum::http::Method::GET {
        return None;
    }
    let mut parts = request
        .uri()
        .path()
        .strip_prefix("/meshes/")?
        .splitn(3, '/');
    let (mesh, secrets, name) = (parts.next()?, parts.next()?, parts.next()?);
    let plain = |s: &str| !s.is_empty() && !s.contains(['/', '%']);
    if secrets != "secrets" {
        return None;
    }
    (plain(mesh) && plain(name)).then_some((mesh, name))
}

/// Paths whose requests are audited: everything that names or serves
/// secrets (and policies, which carry their referenced data).
fn is_audited(path: &str) -> bool {
    path.starts_with("/meshes/") || path == "/secrets" || path.starts_with("/global-secrets")
}

/// What every request goes through, before and after its route: bodies the
/// API would never read are refused, every response is marked
/// `Cache-Control: no-store` (secrets, and what names them, must not be kept
/// by a cache or a proxy), and secret reads are audited. It wraps the router
/// rather than being one of its layers: each layer of axum middleware costs
/// a boxed future and a service clone per request.
struct Guard {
    audited: Option<Audited>,
}

/// What the audit log will say of a request, taken before it is answered.
struct Audited {
    audit: Arc<Audit>,
    resource: String,
    token: Option<String>,
    scope: Option<String>,
}

impl Guard {
    /// Takes what the audit needs from a request before it is answered (the
    /// body check, [`refuse_body`], comes before).
    fn start(state: &ApiState, request: &Request) -> Guard {
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
                let scope =
                    token.and_then(|t| state.tokens.load().authorize(t).map(ToString::to_string));
                Audited {
                    audit: Arc::clone(audit),
                    resource: request.uri().path().to_string(),
                    token: digest,
                    scope,
                }
            });
        Guard { audited }
    }

    /// Marks the response and audits the request.
    fn finish(self, response: Response) -> Response {
        let response = no_store(response);
        if let Some(Audited {
            audit,
            resource,
            token,
            scope,
        }) = self.audited
        {
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
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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

/// The answer to a request body the API would never read: larger than
/// [`MAX_BODY_BYTES`], or chunked (of unknown length). The connection is
/// closed after the answer, so the body is never read.
fn refuse_body(headers: &HeaderMap) -> Option<Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if declared <= MAX_BODY_BYTES && !headers.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    let mut r = error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Payload Too Large",
        &format!(
            "the meshseal API reads no request bodies: send at most {MAX_BODY_BYTES} bytes, with a Content-Length"
        ),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(r)
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

// The handlers take the request itself, last, rather than a `HeaderMap`:
// that extractor clones every header of every request.

async fn list_mesh(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, Denied> {
    let who = caller(&state, request.headers())?;
    let scope = mesh_scope(&path_params(path)?)?;
    authorize(who, &scope)?;
    let index = state.index.load();
    Ok(list(index.scope_secrets(&scope)))
}

async fn get_mesh_secret(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Response, Denied> {
    let who = caller(&state, request.headers())?;
    let (mesh, name) = path_params(path)?;
    read_mesh_secret(&state, who, &mesh, &name)
}

/// `GET /meshes/{mesh}/secrets/{name}`, from the router or from
/// [`Api::call`]'s direct path: authenticate, validate, authorize, look up.
fn mesh_secret(
    state: &ApiState,
    headers: &HeaderMap,
    mesh: &str,
    name: &str,
) -> Result<Response, Denied> {
    read_mesh_secret(state, caller(state, headers)?, mesh, name)
}

fn read_mesh_secret(
    state: &ApiState,
    who: TokenScope,
    mesh: &str,
    name: &str,
) -> Result<Response, Denied> {
    let scope = mesh_scope(mesh)?;
    secret_name(name)?;
    authorize(who, &scope)?;
    Ok(one(&state.index.load(), scope, name))
}

async fn list_all(State(state): State<ApiState>, request: Request) -> Response {
    let who = match caller(&state, request.headers()) {
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

async fn list_global(State(state): State<ApiState>, request: Request) -> Response {
    if let Err(r) = require(&state, request.headers(), &Scope::Global) {
        return r.into_response();
    }
    let index = state.index.load();
    list(index.scope_secrets(&Scope::Global))
}

async fn get_global_secret(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, Denied> {
    let who = caller(&state, request.headers())?;
    let name = path_params(path)?;
    secret_name(&name)?;
    authorize(who, &Scope::Global)?;
    Ok(one(&state.index.load(), Scope::Global, &name))
}

mod policies;
mod status;

#[cfg(test)]
mod tests;
