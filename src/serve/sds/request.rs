//! What the server reads of a client's requests: `DiscoveryRequest` and
//! `DeltaDiscoveryRequest` with only the fields meshseal uses.
//!
//! These are the Envoy API's messages (envoy/service/discovery/v3) with the
//! same field numbers and types, and fewer fields: prost skips a field it
//! does not know by its length, without allocating. What that skips is
//! Envoy's node description (its `extensions` list, build version, metadata:
//! about 60 KB in Envoy 1.40, in every request unless
//! `set_node_on_first_message_only`), of which meshseal reads the id and
//! cluster for its logs, and `resource_locators` (xdstp names, which this
//! server does not serve). Decoding Envoy's whole node allocated a string
//! for every extension of every request (BENCHMARKS.md, "SDS streams'
//! memory").
//!
//! A request that decodes as the Envoy API's message decodes as these, with
//! the same values in the fields kept (the `sds_names` fuzz property checks
//! it against `envoy-types`); these accept some requests the full messages
//! refuse (a malformed field that is skipped here).

use std::collections::BTreeMap;

/// `envoy.config.core.v3.Node`: who the client is, for logs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeId {
    /// `id`.
    #[prost(string, tag = "1")]
    pub id: String,
    /// `cluster`.
    #[prost(string, tag = "2")]
    pub cluster: String,
}

/// `google.rpc.Status`: why a client rejected a response (its `details`
/// are skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorDetail {
    /// `code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// `message`.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `envoy.service.discovery.v3.DiscoveryRequest` (state of the world, and
/// `FetchSecrets`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SotwRequest {
    /// `version_info`: the version the client holds (ACKs it).
    #[prost(string, tag = "1")]
    pub version_info: String,
    /// `node`.
    #[prost(message, optional, tag = "2")]
    pub node: Option<NodeId>,
    /// `resource_names`: every name the stream wants.
    #[prost(string, repeated, tag = "3")]
    pub resource_names: Vec<String>,
    /// `type_url`.
    #[prost(string, tag = "4")]
    pub type_url: String,
    /// `response_nonce`: the response this answers.
    #[prost(string, tag = "5")]
    pub response_nonce: String,
    /// `error_detail`: set in a NACK.
    #[prost(message, optional, tag = "6")]
    pub error_detail: Option<ErrorDetail>,
}

/// `envoy.service.discovery.v3.DeltaDiscoveryRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeltaRequest {
    /// `node`.
    #[prost(message, optional, tag = "1")]
    pub node: Option<NodeId>,
    /// `type_url`.
    #[prost(string, tag = "2")]
    pub type_url: String,
    /// `resource_names_subscribe`.
    #[prost(string, repeated, tag = "3")]
    pub resource_names_subscribe: Vec<String>,
    /// `resource_names_unsubscribe`.
    #[prost(string, repeated, tag = "4")]
    pub resource_names_unsubscribe: Vec<String>,
    /// `initial_resource_versions`: what a reconnecting client holds.
    #[prost(btree_map = "string, string", tag = "5")]
    pub initial_resource_versions: BTreeMap<String, String>,
    /// `response_nonce`.
    #[prost(string, tag = "6")]
    pub response_nonce: String,
    /// `error_detail`: set in a NACK.
    #[prost(message, optional, tag = "7")]
    pub error_detail: Option<ErrorDetail>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{node::UserAgentVersionType, Extension, Node};
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryRequest, DiscoveryRequest, ResourceLocator,
    };
    use envoy_types::pb::google::protobuf::Any;
    use envoy_types::pb::google::rpc::Status as RpcStatus;
    use prost::Message as _;

    fn node() -> Node {
        Node {
            id: "gateway-1".into(),
            cluster: "edge".into(),
            user_agent_name: "envoy".into(),
            user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion("1.40".into())),
            extensions: (0..200)
                .map(|i| Extension {
                    name: format!("envoy.filters.http.f{i}"),
                    category: "envoy.filters.http".into(),
                    type_urls: vec![format!("type.googleapis.com/f{i}")],
                    ..Extension::default()
                })
                .collect(),
            client_features: vec!["envoy.lb.does_not_support_overprovisioning".into()],
            ..Node::default()
        }
    }

    fn status() -> RpcStatus {
        RpcStatus {
            code: 13,
            message: "Failed to load certificate chain".into(),
            details: vec![Any {
                type_url: "type.googleapis.com/x".into(),
                value: vec![1, 2, 3],
            }],
        }
    }

    #[test]
    fn a_full_request_decodes_to_the_fields_kept() {
        let full = DiscoveryRequest {
            version_info: "v1".into(),
            node: Some(node()),
            resource_names: vec!["m/a".into(), "m/b".into()],
            resource_locators: vec![ResourceLocator {
                name: "xdstp://x".into(),
                ..ResourceLocator::default()
            }],
            type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret".into(),
            response_nonce: "7".into(),
            error_detail: Some(status()),
        };
        let lean = SotwRequest::decode(full.encode_to_vec().as_slice()).unwrap();
        let want = SotwRequest {
            version_info: "v1".into(),
            node: Some(NodeId {
                id: "gateway-1".into(),
                cluster: "edge".into(),
            }),
            resource_names: full.resource_names.clone(),
            type_url: full.type_url.clone(),
            response_nonce: "7".into(),
            error_detail: Some(ErrorDetail {
                code: 13,
                message: "Failed to load certificate chain".into(),
            }),
        };
        assert_eq!(lean, want);
        // What is kept encodes as the full message would encode it.
        let back = DiscoveryRequest::decode(want.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.resource_names, full.resource_names);
        assert_eq!(back.node.unwrap().id, "gateway-1");
    }

    #[test]
    fn a_full_delta_request_decodes_to_the_fields_kept() {
        let full = DeltaDiscoveryRequest {
            node: Some(node()),
            type_url: "t".into(),
            resource_names_subscribe: vec!["m/a".into()],
            resource_names_unsubscribe: vec!["m/b".into()],
            initial_resource_versions: [("m/a".to_string(), "abc".to_string())].into(),
            response_nonce: "3".into(),
            error_detail: Some(status()),
            ..DeltaDiscoveryRequest::default()
        };
        let lean = DeltaRequest::decode(full.encode_to_vec().as_slice()).unwrap();
        assert_eq!(lean.node.unwrap().cluster, "edge");
        assert_eq!(lean.type_url, "t");
        assert_eq!(lean.resource_names_subscribe, ["m/a"]);
        assert_eq!(lean.resource_names_unsubscribe, ["m/b"]);
        assert_eq!(lean.initial_resource_versions["m/a"], "abc");
        assert_eq!(lean.response_nonce, "3");
        assert_eq!(lean.error_detail.unwrap().code, 13);
    }
}
