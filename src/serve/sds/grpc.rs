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
//! the same limits ([`MAX_REQUEST_BYTES`], [`MAX_RESPONSE_BYTES`]), and a
//! stream's read buffer is given back after a large request
//! (`super::reader`). Requests are decoded as `super::request`'s messages,
//! which keep only the fields meshseal reads. The routing and the wire
//! format stay tonic's and prost's.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SERVICE_NAME;
use tonic::body::Body;
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::{http, BoxFuture};
use tonic::server::{Grpc, NamedService, StreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstEncoder;

use super::delta::Delta;
use super::reader::{Counted, Requests, Source};
use super::request::{DeltaRequest, SotwRequest};
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

/// prost's codec with [`BUFFER_BYTES`] buffers, its decoder counting for a
/// stream's [`Source`].
struct SmallBuffers<E, D> {
    source: Option<Arc<Source>>,
    _messages: PhantomData<fn(E) -> D>,
}

impl<E, D> SmallBuffers<E, D> {
    fn new(source: Option<Arc<Source>>) -> Self {
        SmallBuffers {
            source,
            _messages: PhantomData,
        }
    }
}

pub(super) fn buffer_settings() -> BufferSettings {
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
    type Decoder = Counted<D>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        Counted::new(self.source.clone())
    }
}

fn grpc<E, D>(source: Option<Arc<Source>>) -> Grpc<SmallBuffers<E, D>>
where
    E: prost::Message + Send + 'static,
    D: prost::Message + Default + Send + 'static,
{
    Grpc::new(SmallBuffers::new(source))
        .apply_max_message_size_config(Some(MAX_REQUEST_BYTES), Some(MAX_RESPONSE_BYTES))
}

/// A stream's call, with the source of its request body.
struct Stream(Arc<Service>, Arc<Source>);

impl Stream {
    fn open<M: super::stream::Machine>(
        &self,
        request: Request<Streaming<M::Request>>,
        machine: M,
    ) -> Ready<Result<Response<ResponseStream<M::Response>>, Status>> {
        let (metadata, _, messages) = request.into_parts();
        let requests = Requests::new(messages, self.1.clone());
        ready(self.0.open(&metadata, requests, machine))
    }
}

struct StreamSecrets(Stream);

impl StreamingService<SotwRequest> for StreamSecrets {
    type Response = DiscoveryResponse;
    type ResponseStream = ResponseStream<DiscoveryResponse>;
    type Future = Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<SotwRequest>>) -> Self::Future {
        self.0.open(request, Sotw::default())
    }
}

struct DeltaSecrets(Stream);

impl StreamingService<DeltaRequest> for DeltaSecrets {
    type Response = DeltaDiscoveryResponse;
    type ResponseStream = ResponseStream<DeltaDiscoveryResponse>;
    type Future = Ready<Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<DeltaRequest>>) -> Self::Future {
        self.0.open(request, Delta::default())
    }
}

struct FetchSecrets(Arc<Service>);

impl UnaryService<SotwRequest> for FetchSecrets {
    type Response = DiscoveryResponse;
    type Future = Ready<Result<Response<DiscoveryResponse>, Status>>;

    fn call(&mut self, request: Request<SotwRequest>) -> Self::Future {
        ready(self.0.fetch(&request).map(Response::new))
    }
}

impl tonic::codegen::Service<http::Request<Body>> for Routes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let service = self.0.clone();
        let path = req.uri().path();
        if path == STREAM_SECRETS || path == DELTA_SECRETS {
            let sotw = path == STREAM_SECRETS;
            let (source, req) = Source::wrap(req);
            let grpc_source = Some(source.clone());
            let stream = Stream(service, source);
            if sotw {
                Box::pin(async move {
                    Ok(grpc(grpc_source)
                        .streaming(StreamSecrets(stream), req)
                        .await)
                })
            } else {
                Box::pin(
                    async move { Ok(grpc(grpc_source).streaming(DeltaSecrets(stream), req).await) },
                )
            }
        } else if path == FETCH_SECRETS {
            Box::pin(async move { Ok(grpc(None).unary(FetchSecrets(service), req).await) })
        } else {
            Box::pin(async {
                Ok(Status::unimplemented("not a SecretDiscoveryService method").into_http())
            })
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
