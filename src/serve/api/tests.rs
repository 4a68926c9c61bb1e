//! The router in-process: each rule of the request path, one request at a time.
use super::*;
use crate::document::{Document, SecretData};
use crate::identity::Identities;
use crate::store::Store;
use axum::body::Body;

const ADMIN: &str = "mst_test_admin";
const PAYMENTS: &str = "mst_test_payments";

fn digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::recipients::hex(&Sha256::digest(token.as_bytes()))
}

/// A router over a store with `payments/db` and global `root-ca`.
fn app(public_metrics: bool) -> (tempfile::TempDir, Api) {
    app_with_sds(public_metrics, None)
}

fn app_with_sds(
    public_metrics: bool,
    sds: Option<Arc<crate::serve::sds::SdsMetrics>>,
) -> (tempfile::TempDir, Api) {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = crate::identity::generate();
    let ids = Identities::from_age_text(&secret).unwrap();
    for scope in ["meshes/payments", "global"] {
        std::fs::create_dir_all(dir.path().join(scope)).unwrap();
        std::fs::write(
            dir.path().join(scope).join("recipients.txt"),
            format!("{public}\n"),
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    for (scope, name) in [
        (Scope::mesh("payments").unwrap(), "db"),
        (Scope::Global, "root-ca"),
    ] {
        let id = SecretId::new(scope, name).unwrap();
        store
            .put(&Document::new(id, SecretData::new(b"v".to_vec())), None)
            .unwrap();
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
        sds,
    };
    (dir, router(state))
}

fn call(app: &Api, method: &str, path: &str, token: Option<&str>) -> Response {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    send(app, request.body(Body::empty()).unwrap())
}

fn send(app: &Api, request: Request) -> Response {
    let Ok(response) = block_on(hyper::service::Service::call(app, request));
    response
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn body_text(response: Response) -> String {
    let bytes = block_on(axum::body::to_bytes(response.into_body(), usize::MAX)).unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A plain secret read skips the router (`Api::call`); the same read with a
/// percent-encoded path goes through it. Both must answer alike, behind the
/// same guard.
#[test]
fn the_direct_secret_read_answers_as_the_router_does() {
    let (_dir, app) = app(false);
    let direct = call(&app, "GET", "/meshes/payments/secrets/db", Some(PAYMENTS));
    assert_eq!(direct.status(), 200);
    let headers = |r: &Response| {
        [header::CONTENT_TYPE, header::CACHE_CONTROL].map(|h| r.headers().get(h).cloned())
    };
    let direct_headers = headers(&direct);
    let direct_body = body_text(direct);
    assert!(direct_body.contains(r#""name":"db""#), "{direct_body}");
    for routed in [
        "/meshes/pay%6Dents/secrets/db",
        "/meshes/payments/secrets/d%62",
    ] {
        let r = call(&app, "GET", routed, Some(PAYMENTS));
        assert_eq!(r.status(), 200, "{routed}");
        assert_eq!(headers(&r), direct_headers, "{routed}");
        assert_eq!(body_text(r), direct_body, "{routed}");
    }
    let status = |p, t| call(&app, "GET", p, t).status().as_u16();
    assert_eq!(status("/meshes/pay%6Dents/secrets/db", None), 401);
    assert_eq!(status("/meshes/payments/secrets/db/more", Some(ADMIN)), 404);
    // The router's answers: an empty mesh name is refused by the name rules.
    assert_eq!(status("/meshes//secrets/db", Some(ADMIN)), 400);
    // The body limit comes first on the direct path too.
    let large = Request::builder()
        .uri("/meshes/payments/secrets/db")
        .header("authorization", format!("Bearer {PAYMENTS}"))
        .header("content-length", (MAX_BODY_BYTES + 1).to_string())
        .body(Body::empty())
        .unwrap();
    let refused = send(&app, large);
    assert_eq!(refused.status(), 413);
    assert_eq!(refused.headers()[header::CACHE_CONTROL], "no-store");
}

#[test]
fn authenticate_then_validate_then_authorize_then_look_up() {
    let (_dir, app) = app(false);
    let status = |m, p, t| call(&app, m, p, t).status().as_u16();
    assert_eq!(status("GET", "/meshes/payments/secrets/db", None), 401);
    assert_eq!(
        status("GET", "/meshes/payments/secrets/db", Some("mst_unknown")),
        401
    );
    assert_eq!(
        status("GET", "/meshes/payments/secrets/Bad_Name", Some(PAYMENTS)),
        400
    );
    assert_eq!(
        status("GET", "/meshes/other/secrets/db", Some(PAYMENTS)),
        403
    );
    assert_eq!(
        status("GET", "/meshes/payments/secrets/missing", Some(PAYMENTS)),
        404
    );
    assert_eq!(
        status("GET", "/meshes/payments/secrets/db", Some(PAYMENTS)),
        200
    );
    assert_eq!(
        status("GET", "/global-secrets/root-ca", Some(PAYMENTS)),
        403
    );
    assert_eq!(status("GET", "/global-secrets/root-ca", Some(ADMIN)), 200);
    assert_eq!(
        status("PUT", "/meshes/payments/secrets/db", Some(ADMIN)),
        405
    );
    assert_eq!(status("GET", "/ready", None), 200);
}

#[test]
fn every_answer_is_not_cacheable() {
    let (_dir, app) = app(false);
    for (path, token) in [
        ("/meshes/payments/secrets/db", Some(PAYMENTS)),
        ("/meshes/payments/secrets/db", None),
        ("/status", Some(ADMIN)),
    ] {
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

#[test]
fn metrics_carry_the_sds_counters_when_sds_runs() {
    let body = |app: &Api| body_text(call(app, "GET", "/metrics", Some(ADMIN)));
    let (_dir, without) = app(false);
    assert!(!body(&without).contains("meshseal_sds_"));
    let (_dir2, with) = app_with_sds(false, Some(Arc::new(Default::default())));
    let text = body(&with);
    assert!(text.contains("meshseal_sds_open_streams 0"), "{text}");
    assert!(text.contains("meshseal_decrypted_total"), "{text}");
}
