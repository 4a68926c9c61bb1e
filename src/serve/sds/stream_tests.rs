//! Tests of `super` (the state-of-the-world machine and the subscription),
//! and the `World` the other machines' tests share.

use super::super::names::MAX_NAMES;
use super::*;
use crate::store::Store;
use crate::tokens::{TokenScope, Tokens};
use std::path::PathBuf;
use tonic::metadata::MetadataMap;
use tonic::Code;

pub(crate) struct World {
    _dir: tempfile::TempDir,
    store: Store,
    ids: crate::identity::Identities,
    index: Index,
    pub(crate) cache: Cache,
    metrics: SdsMetrics,
    tokens: Tokens,
    admin: String,
    pub(crate) pay: String,
}

impl World {
    pub(crate) fn new() -> World {
        let (dir, store, ids) = super::super::cache::tests::store();
        let t = dir.path().join("tokens");
        let admin = crate::tokens::create(&t, &TokenScope::Admin)
            .unwrap()
            .to_string();
        let pay = crate::tokens::create(&t, &TokenScope::Mesh("m".into()))
            .unwrap()
            .to_string();
        let index = Index::load(&store, &ids).unwrap();
        World {
            tokens: Tokens::load(&t).unwrap(),
            _dir: dir,
            store,
            ids,
            index,
            cache: Cache::default(),
            metrics: SdsMetrics::default(),
            admin,
            pay,
        }
    }

    pub(crate) fn put(&mut self, mesh: &str, name: &str, data: &str) {
        let path = super::super::cache::tests::put_in(&self.store, mesh, name, data);
        let changed: BTreeSet<PathBuf> = [path].into();
        self.index = self.index.update(&self.store, &self.ids, &changed).0;
    }

    pub(crate) fn caller(&self, token: &str) -> Caller {
        let mut md = MetadataMap::new();
        md.insert("authorization", format!("Bearer {token}").parse().unwrap());
        Caller::from_metadata(&md, &self.tokens).unwrap()
    }

    pub(crate) fn view(&self) -> View<'_> {
        View {
            index: &self.index,
            cache: &self.cache,
            metrics: &self.metrics,
            stream: 1,
            node: "test",
        }
    }
}

fn request(names: &[&str], version: &str, nonce: &str) -> SotwRequest {
    SotwRequest {
        version_info: version.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        type_url: SECRET_TYPE_URL.into(),
        response_nonce: nonce.into(),
        ..SotwRequest::default()
    }
}

fn nack(names: &[&str], version: &str, nonce: &str) -> SotwRequest {
    SotwRequest {
        error_detail: Some(ErrorDetail {
            code: 3,
            message: "Failed to load certificate chain\n".into(),
        }),
        ..request(names, version, nonce)
    }
}

#[test]
fn sotw_ack_nack_and_pushes_on_change() {
    let mut w = World::new();
    let (c, k) = super::super::resources::tests::cert(30);
    w.put("m", "gw", &format!("{c}{k}"));
    let caller = w.caller(&w.pay);
    let mut s = Sotw::default();
    let first = s
        .on_request(request(&["m/gw"], "", ""), &caller, &w.view())
        .unwrap()
        .expect("first response");
    assert_eq!(first.resources.len(), 1);
    assert_eq!(first.type_url, SECRET_TYPE_URL);
    // ACK: nothing more to send.
    let ack = request(&["m/gw"], &first.version_info, &first.nonce);
    assert!(s.on_request(ack, &caller, &w.view()).unwrap().is_none());
    assert_eq!(s.acked(), Some(first.version_info.as_str()));
    // A change elsewhere in the store pushes nothing.
    w.put("m", "other", "x");
    assert!(s.on_change(&w.view()).is_none());
    // A new certificate is pushed with a new version and nonce.
    let (c2, k2) = super::super::resources::tests::cert(30);
    w.put("m", "gw", &format!("{c2}{k2}"));
    let second = s.on_change(&w.view()).expect("pushed");
    assert_ne!(second.version_info, first.version_info);
    assert_ne!(second.nonce, first.nonce);
    // NACK: counted, the ACKed version stays, the same bytes are not resent.
    let n = nack(&["m/gw"], &first.version_info, &second.nonce);
    assert!(s.on_request(n, &caller, &w.view()).unwrap().is_none());
    assert_eq!(w.metrics.snapshot().nacks, 1);
    assert_eq!(s.acked(), Some(first.version_info.as_str()));
    assert!(s.on_change(&w.view()).is_none());
    // A stale nonce is not answered, even when names change.
    w.put("m", "ca", &c);
    let stale = request(&["m/gw", "m/ca"], &first.version_info, &first.nonce);
    assert!(s.on_request(stale, &caller, &w.view()).unwrap().is_none());
    // ... the next event serves the new name.
    let third = s.on_change(&w.view()).expect("new name served");
    assert_eq!(third.resources.len(), 2);
    assert_eq!(w.metrics.snapshot().pushes, 3);
}

#[test]
fn sotw_unknown_names_wait_and_a_reconnect_gets_nothing_new() {
    let mut w = World::new();
    let caller = w.caller(&w.pay);
    let mut s = Sotw::default();
    assert!(s
        .on_request(request(&["m/later"], "", ""), &caller, &w.view())
        .unwrap()
        .is_none());
    w.put("m", "later", "token-bytes");
    let r = s.on_change(&w.view()).expect("pushed once it exists");
    // A new stream of a client that holds this version gets nothing.
    let mut again = Sotw::default();
    let resumed = request(&["m/later"], &r.version_info, "");
    assert!(again
        .on_request(resumed, &caller, &w.view())
        .unwrap()
        .is_none());
    // ... and one holding an older version gets the current one.
    let mut old = Sotw::default();
    let behind = request(&["m/later"], "0000", "");
    assert!(old
        .on_request(behind, &caller, &w.view())
        .unwrap()
        .is_some());
}

#[test]
fn sotw_refuses_other_meshes_bad_names_and_types() {
    let w = World::new();
    let pay = w.caller(&w.pay);
    let admin = w.caller(&w.admin);
    let mut s = Sotw::default();
    let e = s
        .on_request(request(&["m/a", "other/a"], "", ""), &pay, &w.view())
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(s
        .on_request(request(&["other/a"], "", ""), &admin, &w.view())
        .is_ok());
    let e = s
        .on_request(request(&["no-mesh"], "", ""), &admin, &w.view())
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut wrong = request(&["m/a"], "", "");
    wrong.type_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster".into();
    let e = s.on_request(wrong, &admin, &w.view()).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let many: Vec<String> = (0..=MAX_NAMES).map(|i| format!("m/s{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let e = s
        .on_request(request(&refs, "", ""), &admin, &w.view())
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("at most 1000"), "{}", e.message());
}

#[test]
fn a_subscription_keeps_what_was_sent_of_the_names_it_keeps() {
    let mut w = World::new();
    w.put("m", "a", "1");
    w.put("m", "b", "2");
    let names = |list: &[&str]| parse_all(list.iter().copied()).unwrap();
    let mut sub = Subscription::default();
    sub.set_names(names(&["m/b", "m/a"]), &w.cache);
    assert_eq!(w.cache.len(), 2);
    let listed: Vec<String> = sub.names().map(ToString::to_string).collect();
    assert_eq!(listed, ["m/a", "m/b"]);
    let served = sub.served(&w.view());
    assert!(sub.changed(&served));
    sub.mark_sent(&served);
    assert!(!sub.changed(&served));
    let b = ResourceName::parse("m/b").unwrap();
    let sent_b = *sub.sent(&b).expect("b was sent");
    // b stays (with what was sent of it), a goes, c comes.
    sub.set_names(names(&["m/b", "m/c"]), &w.cache);
    assert_eq!(sub.sent(&b), Some(&sent_b));
    assert_eq!(sub.sent(&ResourceName::parse("m/a").unwrap()), None);
    assert_eq!(sub.sent(&ResourceName::parse("m/c").unwrap()), None);
    assert_eq!(w.cache.len(), 2);
    // A name that is not subscribed is never marked.
    sub.mark_sent(&served);
    assert_eq!(sub.sent(&ResourceName::parse("m/a").unwrap()), None);
    sub.release(&w.cache);
    assert_eq!(w.cache.len(), 0);
    assert_eq!(sub.names().len(), 0);
}

#[test]
fn fetch_answers_once_or_not_found() {
    let mut w = World::new();
    w.put("m", "pw", "hunter2");
    let caller = w.caller(&w.pay);
    let r = fetch(&request(&["m/pw", "m/none"], "", ""), &caller, &w.view()).unwrap();
    assert_eq!(r.resources.len(), 1);
    let e = fetch(&request(&["m/none"], "", ""), &caller, &w.view()).unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = fetch(&request(&["x/pw"], "", ""), &caller, &w.view()).unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}
