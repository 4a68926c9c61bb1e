//! The gRPC routes of `envoy.service.secret.v3.SecretDiscoveryService`, with
//! codec buffers sized for SDS.
//!
//! `envoy-types` generates a server for this service, but it builds each
//! call's codec at tonic's defaults: an 8 KiB decode buffer and an 8 KiB
//! encode buffer for every stream, kept for as long as the stream is open
//! (BENCHMARKS.md, "SDS streams' memory": 16 of the 55 KiB an idle
//! connection cost). A request is a few hundred bytes and a response one or
//! two certificates, so these routes start both buffers at [`BUFFER_BYTES`];
//! a larger message grows its buffer as it would grow a default one, up to
//! the same limits ([`MAX_REQUEST_BYTES`], [`MAX_RESPONSE_BYTES`]). The
//! routing, the message types and the wire format stay tonic's and prost's.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SERVICE_NAME;
use tonic::body::Body;
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::{http, Body as HttpBody, BoxFuture, StdError};
use tonic::server::{Grpc, NamedService, StreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::{ProstDecoder, ProstEncoder};

use super::delta::Delta;
use super::service::{ResponseStream, Service};
use super::stream::Sotw;
use super::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};

/// Initial size of a stream's decode and encode buffers: a subscription
/// request without node metadata, or a response of one certificate, fits.
pub(super) const BUFFER_BYTES: usize = 1024;
/// Encoded responses waiting past this size are handed to HTTP/2 (tonic's
/// default: it only matters for a stream of many queued responses).
const YIELD_BYTES: usize = 32 * 1024;

const STREAM_SECRETS: &str = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets";
const DELTA_SECRETS: &str = "/envoy.service.secret.v3.SecretDiscoveryService/DeltaSecrets";
const FETCH_SECRETS: &str = "/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets";

/// The service, routed by method path.
#[derive(Clone)]
pub(super) struct Routes(Arc<Service>);

impl Routes {
    pub(super) fn new(service: Service) -> Routes {
        Routes(Arc::new(service))
    }
}

impl NamedService for Routes {
    const NAME: &'static str = SERVICE_NAME;
}

/// prost's codec with [`BUFFER_BYTES`] buffers.
struct SmallBuffers<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> SmallBuffers<E, D> {
    fn new() -> Self {
        SmallBuffers(PhantomData)
    }
}

fn buffer_settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_BYTES)
}

impl<E, D> Codec for SmallBuffers<E, D>
where
    E: prost::Message + Send + 'static,
    D: prost::Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = ProstEncoder<E>;
    type Decoder = ProstDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(buffer_settings())
    }
}

fn grpc<E, D>() -> Grpc<SmallBuffers<E, D>>
where
    E: prost::Message + Send + 'static,
    D: prost::Message + Default + Send + 'static,
{
    Grpc::new(SmallBuffers::new())
        .apply_max_message_size_config(Some(MAX_REQUEST_BYTES), Some(MAX_RESPONSE_BYTES))
}

struct StreamSecrets(Arc<Service>);

impl StreamingService<DiscoveryRequest> for StreamSecrets {
    type Response = DiscoveryResponse;
    type ResponseStream = ResponseStream<DiscoveryResponse>;
    type Future = Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<DiscoveryRequest>>) -> Self::Future {
        ready(self.0.open(request, Sotw::default()))
    }
}

struct DeltaSecrets(Arc<Service>);

impl StreamingService<DeltaDiscoveryRequest> for DeltaSecrets {
    type Response = DeltaDiscoveryResponse;
    type ResponseStream = ResponseStream<DeltaDiscoveryResponse>;
    type Future = Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<DeltaDiscoveryRequest>>) -> Self::Future {
        ready(self.0.open(request, Delta::default()))
    }
}

struct FetchSecrets(Arc<Service>);

impl UnaryService<DiscoveryRequest> for FetchSecrets {
    type Response = DiscoveryResponse;
    type Future = Ready<Result<Response<DiscoveryResponse>, Status>>;

    fn call(&mut self, request: Request<DiscoveryRequest>) -> Self::Future {
        ready(self.0.fetch(&request).map(Response::new))
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for Routes
where
    B: HttpBody + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let service = self.0.clone();
        match req.uri().path() {
            STREAM_SECRETS => {
                Box::pin(async move { Ok(grpc().streaming(StreamSecrets(service), req).await) })
            }
            DELTA_SECRETS => {
                Box::pin(async move { Ok(grpc().streaming(DeltaSecrets(service), req).await) })
            }
            FETCH_SECRETS => {
                Box::pin(async move { Ok(grpc().unary(FetchSecrets(service), req).await) })
            }
            _ => Box::pin(async {
                Ok(Status::unimplemented("not a SecretDiscoveryService method").into_http())
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_paths_are_the_services() {
        for (path, method) in [
            (STREAM_SECRETS, "StreamSecrets"),
            (DELTA_SECRETS, "DeltaSecrets"),
            (FETCH_SECRETS, "FetchSecrets"),
        ] {
            assert_eq!(path, format!("/{SERVICE_NAME}/{method}"));
        }
    }
}
