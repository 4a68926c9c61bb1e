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

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use sha2::{Digest, Sha256};
use tonic::Status;
use tracing::{debug, info, warn};

use super::auth::Caller;
use super::cache::{Cache, Lookup};
use super::metrics::SdsMetrics;
use super::names::{parse_all, ResourceName, ResourceNameError};
use super::request::{ErrorDetail, SotwRequest};
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
    /// What the client sends (`super::request`'s lean messages).
    type Request: prost::Message + Default + Send + 'static;
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
fn detail_text(detail: &ErrorDetail) -> String {
    let short: String = detail.message.chars().take(DETAIL_CHARS).collect();
    format!("{short:?}")
}

pub(super) fn log_nack(
    view: &View<'_>,
    nonce: &str,
    detail: &ErrorDetail,
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
    type Request = SotwRequest;
    type Response = DiscoveryResponse;

    fn on_request(
        &mut self,
        req: SotwRequest,
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

    fn node_id(req: &SotwRequest) -> Option<&str> {
        req.node.as_ref().map(|n| n.id.as_str())
    }
}

/// `FetchSecrets`: one request, one answer with whatever can be served;
/// NOT_FOUND when nothing can.
pub(super) fn fetch(
    req: &SotwRequest,
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
#[path = "stream_tests.rs"]
pub(super) mod tests;
