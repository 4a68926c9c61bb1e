//! The xDS conversation of one stream, as plain state machines: a request
//! or an index change goes in, at most one response comes out. The wiring
//! to gRPC (`super::service`) only feeds them events. This file holds what
//! both protocols share, `StreamSecrets` (state of the world) and
//! `FetchSecrets`; `DeltaSecrets` is in `super::delta`.
//!
//! Envoy's rules (the xDS protocol, state of the world and incremental):
//!
//! - A response carries a `version_info` and a `nonce`. The client answers
//!   every response with a request naming that nonce: without
//!   `error_detail` it is an ACK of the version, with it a NACK. After a
//!   NACK the client keeps the last version it ACKed; the server logs the
//!   rejection, counts it, and does not send the same bytes again (no
//!   NACK loop): the next change is pushed as usual.
//! - A request naming an older nonce is stale: its names are taken (each
//!   SotW request lists them all) but it is not answered.
//! - A client that reconnects sends the version it holds; when that is
//!   what would be served, nothing is sent.
//! - Only requested resources are sent. For SDS, a resource missing from a
//!   response is not deleted by the client, so a secret that is unknown, or
//!   whose only versions are refused, is left out (and logged) while the
//!   stream stays open; it is pushed once it exists.
//!
//! Versions are derived from the served bytes (sha256), not from the index
//! generation: a change elsewhere in the store pushes nothing, and a
//! restarted watcher recognises what a reconnecting Envoy already holds.
//!
//! Backpressure: a machine is only asked for a response when the gRPC layer
//! can take one (the response stream is pulled), and it builds the response
//! from the index of that moment. A client that stops reading costs one
//! response in flight, never a queue of stale ones.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use sha2::{Digest, Sha256};
use tonic::Status;
use tracing::{debug, info, warn};

use super::auth::Caller;
use super::cache::{Cache, Lookup};
use super::metrics::SdsMetrics;
use super::names::{parse_all, ResourceName, ResourceNameError};
use super::resources::{Resource, SECRET_TYPE_URL};
use crate::index::Index;
use crate::problem::Diagnostic as _;

/// Most characters of a client's `error_detail` message logged.
const DETAIL_CHARS: usize = 512;

/// What a machine sees of the server for one event.
pub(super) struct View<'a> {
    /// The current index generation.
    pub index: &'a Index,
    /// Last good resources.
    pub cache: &'a Cache,
    /// Counters.
    pub metrics: &'a SdsMetrics,
    /// The stream's number, for logs.
    pub stream: u64,
    /// The client's node id (from its first request), for logs.
    pub node: &'a str,
}

/// A protocol's state machine, driven by `super::service`.
pub(super) trait Machine: Send + 'static {
    /// What the client sends.
    type Request: Send + 'static;
    /// What the server sends.
    type Response: Send + 'static;
    /// A request arrived; an error ends the stream with that status.
    fn on_request(
        &mut self,
        req: Self::Request,
        caller: &Caller,
        view: &View<'_>,
    ) -> Result<Option<Self::Response>, Status>;
    /// A new index generation was published.
    fn on_change(&mut self, view: &View<'_>) -> Option<Self::Response>;
    /// The names and what was sent.
    fn subscription(&mut self) -> &mut Subscription;
    /// The node id a request carries.
    fn node_id(req: &Self::Request) -> Option<&str>;
}

/// What a stream asks for and what it was last sent.
///
/// One sorted `Vec` holds every name with its state: an open stream keeps
/// this for as long as it lives, and a stream usually asks for one or two
/// names (a `BTreeSet` and a `BTreeMap` would each allocate a node of eleven
/// entries, about 2.5 KiB a stream for one name). At most
/// [`super::names::MAX_NAMES`] names, so the binary searches stay short.
#[derive(Default)]
pub(super) struct Subscription {
    entries: Vec<Subscribed>,
    nonces: u64,
}

/// One subscribed name.
struct Subscribed {
    name: ResourceName,
    /// Digest of the resource as last sent.
    sent: Option<[u8; 32]>,
    /// Already reported as not servable (logged once).
    reported: bool,
}

impl Subscribed {
    fn new(name: ResourceName) -> Subscribed {
        Subscribed {
            name,
            sent: None,
            reported: false,
        }
    }
}

impl Subscription {
    /// A subscription that is not in the cache (a `FetchSecrets`).
    fn uncached(names: BTreeSet<ResourceName>) -> Subscription {
        Subscription {
            entries: names.into_iter().map(Subscribed::new).collect(),
            nonces: 0,
        }
    }

    /// The subscribed names, in order.
    pub(super) fn names(&self) -> impl ExactSizeIterator<Item = &ResourceName> + '_ {
        self.entries.iter().map(|e| &e.name)
    }

    fn find(&self, name: &ResourceName) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.name.cmp(name))
    }

    /// Digest of `name`'s resource as last sent.
    pub(super) fn sent(&self, name: &ResourceName) -> Option<&[u8; 32]> {
        let i = self.find(name).ok()?;
        self.entries[i].sent.as_ref()
    }

    /// Subscribes to exactly `names`: what is kept keeps its state, what is
    /// gone leaves the cache, what is new joins it.
    pub(super) fn set_names(&mut self, names: BTreeSet<ResourceName>, cache: &Cache) {
        let mut old = std::mem::take(&mut self.entries).into_iter().peekable();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            while let Some(gone) = old.next_if(|e| e.name < name) {
                cache.unsubscribe(&gone.name);
            }
            match old.next_if(|e| e.name == name) {
                Some(kept) => entries.push(kept),
                None => {
                    cache.subscribe(&name);
                    entries.push(Subscribed::new(name));
                }
            }
        }
        for gone in old {
            cache.unsubscribe(&gone.name);
        }
        self.entries = entries;
    }

    /// Leaves the cache (the stream ended).
    pub(super) fn release(&mut self, cache: &Cache) {
        self.set_names(BTreeSet::new(), cache);
    }

    /// What can be served now, by name; what cannot is logged once.
    pub(super) fn served(&mut self, view: &View<'_>) -> BTreeMap<ResourceName, Arc<Resource>> {
        let mut served = BTreeMap::new();
        for entry in &mut self.entries {
            let name = &entry.name;
            match view.cache.resolve(view.index, name, view.metrics) {
                Lookup::Served(r) => {
                    entry.reported = false;
                    served.insert(name.clone(), r);
                }
                Lookup::Missing(id) => {
                    if !std::mem::replace(&mut entry.reported, true) {
                        warn!(stream = view.stream, node = view.node, resource = %name,
                            "sds: requested resource not served: no {id}; it is pushed once it exists");
                    }
                }
                Lookup::Refused(err) => {
                    // The cache warned about the version itself.
                    if !std::mem::replace(&mut entry.reported, true) {
                        info!(stream = view.stream, node = view.node, resource = %name, code = err.code(),
                            "sds: requested resource not served: its only version is refused");
                    }
                }
            }
        }
        served
    }

    /// Whether anything in `served` differs from what was sent.
    fn changed(&self, served: &BTreeMap<ResourceName, Arc<Resource>>) -> bool {
        served.iter().any(|(n, r)| self.sent(n) != Some(r.digest()))
    }

    /// Records what was sent (names that are not subscribed are ignored).
    pub(super) fn mark_sent<'a>(
        &mut self,
        served: impl IntoIterator<Item = (&'a ResourceName, &'a Arc<Resource>)>,
    ) {
        for (n, r) in served {
            if let Ok(i) = self.find(n) {
                self.entries[i].sent = Some(*r.digest());
            }
        }
    }

    pub(super) fn next_nonce(&mut self) -> String {
        self.nonces += 1;
        self.nonces.to_string()
    }
}

/// The version of a set of served resources.
pub(super) fn version_of(served: &BTreeMap<ResourceName, Arc<Resource>>) -> String {
    let mut h = Sha256::new();
    for (name, r) in served {
        h.update(name.to_string().as_bytes());
        h.update([0]);
        h.update(r.digest());
    }
    crate::recipients::hex(&h.finalize()[..8])
}

pub(super) fn check_type(type_url: &str) -> Result<(), Status> {
    if type_url.is_empty() || type_url == SECRET_TYPE_URL {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "this is a SecretDiscoveryService: type_url must be {SECRET_TYPE_URL}"
        )))
    }
}

pub(super) fn invalid(err: ResourceNameError) -> Status {
    Status::invalid_argument(err.to_string())
}

/// A client's `error_detail` message, escaped and shortened for a log line.
fn detail_text(detail: &RpcStatus) -> String {
    let short: String = detail.message.chars().take(DETAIL_CHARS).collect();
    format!("{short:?}")
}

pub(super) fn log_nack(
    view: &View<'_>,
    nonce: &str,
    detail: &RpcStatus,
    names: &BTreeSet<ResourceName>,
) {
    view.metrics.nacked();
    let resources: Vec<String> = names.iter().take(8).map(ToString::to_string).collect();
    warn!(
        stream = view.stream,
        node = view.node,
        nonce,
        code = detail.code,
        resources = resources.join(","),
        "sds: the client rejected a response (NACK), keeping the version it accepted before: {}",
        detail_text(detail)
    );
}

/// `StreamSecrets`: the state-of-the-world protocol.
#[derive(Default)]
pub(super) struct Sotw {
    sub: Subscription,
    last_nonce: Option<String>,
    sent_version: String,
    acked: Option<String>,
}

impl Sotw {
    fn respond(&mut self, view: &View<'_>) -> Option<DiscoveryResponse> {
        let served = self.sub.served(view);
        if served.is_empty() || !self.sub.changed(&served) {
            return None;
        }
        let version = version_of(&served);
        let nonce = self.sub.next_nonce();
        self.sub.mark_sent(&served);
        self.last_nonce = Some(nonce.clone());
        self.sent_version = version.clone();
        view.metrics.pushed();
        debug!(
            stream = view.stream,
            node = view.node,
            version,
            nonce,
            resources = served.len(),
            "sds: push"
        );
        Some(DiscoveryResponse {
            version_info: version,
            resources: served.values().map(|r| r.to_any()).collect(),
            type_url: SECRET_TYPE_URL.to_string(),
            nonce,
            ..DiscoveryResponse::default()
        })
    }

    /// The version last ACKed by the client.
    #[cfg(test)]
    pub(super) fn acked(&self) -> Option<&str> {
        self.acked.as_deref()
    }
}

impl Machine for Sotw {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;

    fn on_request(
        &mut self,
        req: DiscoveryRequest,
        caller: &Caller,
        view: &View<'_>,
    ) -> Result<Option<DiscoveryResponse>, Status> {
        check_type(&req.type_url)?;
        let names = parse_all(req.resource_names.iter().map(String::as_str)).map_err(invalid)?;
        caller.authorize(&names)?;
        let answers_latest = !req.response_nonce.is_empty()
            && self.last_nonce.as_deref() == Some(req.response_nonce.as_str());
        if answers_latest {
            match &req.error_detail {
                Some(detail) => log_nack(view, &req.response_nonce, detail, &names),
                None => {
                    view.metrics.acked();
                    debug!(stream = view.stream, version = req.version_info, "sds: ACK");
                    self.acked = Some(req.version_info.clone());
                }
            }
        }
        self.sub.set_names(names, view.cache);
        if !req.response_nonce.is_empty() && !answers_latest {
            debug!(
                stream = view.stream,
                nonce = req.response_nonce,
                "sds: stale nonce, not answered"
            );
            return Ok(None);
        }
        if req.response_nonce.is_empty() && !req.version_info.is_empty() {
            // A client that reconnects says what it holds.
            let served = self.sub.served(view);
            if version_of(&served) == req.version_info {
                self.sub.mark_sent(&served);
                self.acked = Some(req.version_info);
                return Ok(None);
            }
        }
        Ok(self.respond(view))
    }

    fn on_change(&mut self, view: &View<'_>) -> Option<DiscoveryResponse> {
        self.respond(view)
    }

    fn subscription(&mut self) -> &mut Subscription {
        &mut self.sub
    }

    fn node_id(req: &DiscoveryRequest) -> Option<&str> {
        req.node.as_ref().map(|n| n.id.as_str())
    }
}

/// `FetchSecrets`: one request, one answer with whatever can be served;
/// NOT_FOUND when nothing can.
pub(super) fn fetch(
    req: &DiscoveryRequest,
    caller: &Caller,
    view: &View<'_>,
) -> Result<DiscoveryResponse, Status> {
    check_type(&req.type_url)?;
    let names = parse_all(req.resource_names.iter().map(String::as_str)).map_err(invalid)?;
    caller.authorize(&names)?;
    let mut sub = Subscription::uncached(names);
    let served = sub.served(view);
    if served.is_empty() {
        return Err(Status::not_found(
            "none of the requested resources can be served (unknown secrets, or refused versions: see the watcher's log)",
        ));
    }
    view.metrics.pushed();
    Ok(DiscoveryResponse {
        version_info: version_of(&served),
        resources: served.values().map(|r| r.to_any()).collect(),
        type_url: SECRET_TYPE_URL.to_string(),
        ..DiscoveryResponse::default()
    })
}

#[cfg(test)]
pub(super) mod tests {
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

    fn request(names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: version.into(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            type_url: SECRET_TYPE_URL.into(),
            response_nonce: nonce.into(),
            ..DiscoveryRequest::default()
        }
    }

    fn nack(names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            error_detail: Some(RpcStatus {
                code: 3,
                message: "Failed to load certificate chain\n".into(),
                ..RpcStatus::default()
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
}
