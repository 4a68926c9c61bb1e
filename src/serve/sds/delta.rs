//! `DeltaSecrets`: the incremental xDS protocol, on the subscription
//! bookkeeping of `super::stream`. The client subscribes and unsubscribes
//! by name, says on (re)connection which versions it holds
//! (`initial_resource_versions`), and is sent only the resources whose bytes
//! changed, each with its own version. A secret deleted from the store is
//! not removed from the client: as with state of the world, Envoy keeps the
//! last version it has.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, Resource as DeltaResource,
};
use tonic::Status;
use tracing::debug;

use super::auth::Caller;
use super::names::{parse_all, ResourceName, ResourceNameError, MAX_NAMES};
use super::request::DeltaRequest;
use super::resources::SECRET_TYPE_URL;
use super::stream::{check_type, invalid, log_nack, version_of, Machine, Subscription, View};

/// `DeltaSecrets`: the incremental protocol.
#[derive(Default)]
pub(super) struct Delta {
    sub: Subscription,
    /// Versions the client said it holds when it (re)connected.
    initial: BTreeMap<ResourceName, String>,
    started: bool,
}

impl Delta {
    fn respond(&mut self, view: &View<'_>) -> Option<DeltaDiscoveryResponse> {
        let served = self.sub.served(view);
        let initial = std::mem::take(&mut self.initial);
        let (held, changed): (Vec<_>, Vec<_>) = served
            .iter()
            .filter(|(n, r)| self.sub.sent(n) != Some(r.digest()))
            .partition(|(n, r)| initial.get(*n) == Some(&r.version()));
        self.sub.mark_sent(held);
        if changed.is_empty() {
            return None;
        }
        let nonce = self.sub.next_nonce();
        let resources = changed
            .iter()
            .map(|(_, r)| DeltaResource {
                name: r.name().to_string(),
                version: r.version(),
                resource: Some(r.to_any()),
                ..DeltaResource::default()
            })
            .collect();
        self.sub.mark_sent(changed.iter().copied());
        view.metrics.pushed();
        debug!(
            stream = view.stream,
            node = view.node,
            nonce,
            resources = changed.len(),
            "sds: delta push"
        );
        Some(DeltaDiscoveryResponse {
            system_version_info: version_of(&served),
            resources,
            type_url: SECRET_TYPE_URL.to_string(),
            nonce,
            ..DeltaDiscoveryResponse::default()
        })
    }
}

impl Machine for Delta {
    type Request = DeltaRequest;
    type Response = DeltaDiscoveryResponse;

    fn on_request(
        &mut self,
        req: DeltaRequest,
        caller: &Caller,
        view: &View<'_>,
    ) -> Result<Option<DeltaDiscoveryResponse>, Status> {
        check_type(&req.type_url)?;
        let subscribe =
            parse_all(req.resource_names_subscribe.iter().map(String::as_str)).map_err(invalid)?;
        let unsubscribe = parse_all(req.resource_names_unsubscribe.iter().map(String::as_str))
            .map_err(invalid)?;
        let mut names: BTreeSet<ResourceName> = self.sub.names().cloned().collect();
        names.extend(subscribe);
        names.retain(|n| !unsubscribe.contains(n));
        if names.len() > MAX_NAMES {
            return Err(invalid(ResourceNameError::TooMany { count: names.len() }));
        }
        caller.authorize(&names)?;
        if !req.response_nonce.is_empty() {
            match &req.error_detail {
                Some(detail) => log_nack(view, &req.response_nonce, detail, &names),
                None => view.metrics.acked(),
            }
        }
        if !self.started {
            self.started = true;
            self.initial = req
                .initial_resource_versions
                .iter()
                .filter_map(|(n, v)| Some((ResourceName::parse(n).ok()?, v.clone())))
                .filter(|(n, _)| names.contains(n))
                .collect();
        }
        self.sub.set_names(names, view.cache);
        Ok(self.respond(view))
    }

    fn on_change(&mut self, view: &View<'_>) -> Option<DeltaDiscoveryResponse> {
        self.respond(view)
    }

    fn subscription(&mut self) -> &mut Subscription {
        &mut self.sub
    }

    fn node_id(req: &DeltaRequest) -> Option<&str> {
        req.node.as_ref().map(|n| n.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::super::stream::tests::World;
    use super::*;
    use tonic::Code;

    #[test]
    fn delta_sends_only_what_changed_and_honours_initial_versions() {
        let mut w = World::new();
        let (c, k) = super::super::resources::tests::cert(30);
        w.put("m", "gw", &format!("{c}{k}"));
        w.put("m", "ca", &c);
        let caller = w.caller(&w.pay);
        let mut d = Delta::default();
        let sub = |names: &[&str]| DeltaRequest {
            type_url: SECRET_TYPE_URL.into(),
            resource_names_subscribe: names.iter().map(|s| s.to_string()).collect(),
            ..DeltaRequest::default()
        };
        let r = d
            .on_request(sub(&["m/gw", "m/ca"]), &caller, &w.view())
            .unwrap()
            .unwrap();
        assert_eq!(r.resources.len(), 2);
        let gw_version = r
            .resources
            .iter()
            .find(|x| x.name == "m/gw")
            .unwrap()
            .version
            .clone();
        let ack = DeltaRequest {
            type_url: SECRET_TYPE_URL.into(),
            response_nonce: r.nonce.clone(),
            ..DeltaRequest::default()
        };
        assert!(d.on_request(ack, &caller, &w.view()).unwrap().is_none());
        let (c2, _) = super::super::resources::tests::cert(30);
        w.put("m", "ca", &c2);
        let r2 = d.on_change(&w.view()).unwrap();
        assert_eq!(r2.resources.len(), 1);
        assert_eq!(r2.resources[0].name, "m/ca");
        // Reconnecting with the gw version held: only ca is sent.
        let mut again = Delta::default();
        let mut resume = sub(&["m/gw", "m/ca"]);
        resume.initial_resource_versions = [("m/gw".to_string(), gw_version)].into();
        let r3 = again
            .on_request(resume, &caller, &w.view())
            .unwrap()
            .unwrap();
        let names: Vec<&str> = r3.resources.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["m/ca"]);
        // Unsubscribing releases the cache entries.
        let unsub = DeltaRequest {
            type_url: SECRET_TYPE_URL.into(),
            resource_names_unsubscribe: vec!["m/gw".into(), "m/ca".into()],
            ..DeltaRequest::default()
        };
        assert!(d.on_request(unsub, &caller, &w.view()).unwrap().is_none());
        again.subscription().release(&w.cache);
        assert_eq!(w.cache.len(), 0);
        let e = d
            .on_request(sub(&["other/x"]), &caller, &w.view())
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
}
