//! A stream's requests as tonic decodes them, with tonic's read buffer
//! given back after a large request.
//!
//! tonic's `Streaming` copies a request body into one `BytesMut` for the
//! whole stream and reserves in it the length of each message; a `BytesMut`
//! never shrinks, so after one large request a stream keeps a buffer of that
//! size for as long as it is open. Envoy's requests are large: its node
//! description (~60 KB in Envoy 1.40) is in every one of them by default, and
//! in the first one with `set_node_on_first_message_only`. An idle stream of
//! a real Envoy held ~64 KiB for it (BENCHMARKS.md, "SDS streams' memory").
//!
//! So the body tonic reads is shared ([`Source`]): it counts the bytes it
//! hands to tonic, the decoder counts the bytes of the messages tonic
//! decoded (each message and its gRPC length prefix, [`HEADER_SIZE`]), and
//! when both are equal tonic holds nothing of the body: after a large
//! message, [`Requests::settle`] then puts a new `Streaming` on the same
//! body in place of the old one, whose buffer is freed. Nothing here reads
//! the gRPC framing; tonic still does all of it. Requests may not be
//! compressed (no encoding is accepted), so a decoded message is as long as
//! its bytes on the wire.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use http_body::{Frame, SizeHint};
use prost::bytes::Buf as _;
use tonic::body::Body;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder, HEADER_SIZE};
use tonic::codegen::{http, Body as HttpBody, Bytes};
use tonic::{Status, Streaming};
use tonic_prost::ProstDecoder;

use super::grpc::{buffer_settings, BUFFER_BYTES};
use super::MAX_REQUEST_BYTES;

/// A stream's request body, shared by the `Streaming` that reads it and the
/// decoder that tonic calls for each message.
pub(super) struct Source(Mutex<Tally>);

struct Tally {
    body: Body,
    /// Data bytes handed to tonic.
    delivered: u64,
    /// Bytes of the messages decoded, prefixes included.
    decoded: u64,
    /// Most bytes tonic held at once since its buffer was last replaced.
    peak: u64,
}

impl Source {
    /// The request, reading its body through a new source.
    pub(super) fn wrap(req: http::Request<Body>) -> (Arc<Source>, http::Request<SourceBody>) {
        let (parts, body) = req.into_parts();
        let source = Arc::new(Source(Mutex::new(Tally {
            body,
            delivered: 0,
            decoded: 0,
            peak: 0,
        })));
        let req = http::Request::from_parts(parts, SourceBody(source.clone()));
        (source, req)
    }

    fn tally(&self) -> MutexGuard<'_, Tally> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The body as tonic reads it.
pub(super) struct SourceBody(Arc<Source>);

impl HttpBody for SourceBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let mut tally = self.0.tally();
        let polled = Pin::new(&mut tally.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                tally.delivered += data.len() as u64;
                tally.peak = tally.peak.max(tally.delivered - tally.decoded);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.0.tally().body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.tally().body.size_hint()
    }
}

/// prost's decoder with [`BUFFER_BYTES`] buffers, counting what it decodes
/// for its source (when it has one: a unary call's body is not shared).
pub(super) struct Counted<D> {
    inner: ProstDecoder<D>,
    source: Option<Arc<Source>>,
}

impl<D> Counted<D> {
    pub(super) fn new(source: Option<Arc<Source>>) -> Self {
        Counted {
            inner: ProstDecoder::new(buffer_settings()),
            source,
        }
    }
}

impl<D: prost::Message + Default> Decoder for Counted<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let len = src.remaining();
        let message = self.inner.decode(src)?;
        if let (Some(_), Some(source)) = (&message, &self.source) {
            source.tally().decoded += (HEADER_SIZE + len) as u64;
        }
        Ok(message)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

/// The requests of one stream.
pub(super) struct Requests<T> {
    messages: Streaming<T>,
    source: Arc<Source>,
}

impl<T: prost::Message + Default + Send + 'static> Requests<T> {
    /// `messages` as tonic built it, on `source`'s body.
    pub(super) fn new(messages: Streaming<T>, source: Arc<Source>) -> Self {
        Requests { messages, source }
    }

    /// The next request (cancel-safe, as tonic's).
    pub(super) async fn message(&mut self) -> Result<Option<T>, Status> {
        self.messages.message().await
    }

    /// Called after a request: when tonic's buffer grew past its first size
    /// and holds nothing now, a new `Streaming` on the same body replaces
    /// it. Returns whether it did.
    pub(super) fn settle(&mut self) -> bool {
        {
            let mut tally = self.source.tally();
            if tally.delivered != tally.decoded || tally.peak <= BUFFER_BYTES as u64 {
                return false;
            }
            tally.peak = 0;
        }
        self.messages = Streaming::new_request(
            Counted::<T>::new(Some(self.source.clone())),
            SourceBody(self.source.clone()),
            None,
            Some(MAX_REQUEST_BYTES),
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::sds::request::{NodeId, SotwRequest};
    use prost::Message as _;
    use std::collections::VecDeque;

    /// A body of the given chunks.
    struct Chunks(VecDeque<Bytes>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = Status;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn request(nonce: usize, node_bytes: usize) -> SotwRequest {
        SotwRequest {
            response_nonce: nonce.to_string(),
            node: (node_bytes > 0).then(|| NodeId {
                id: "x".repeat(node_bytes),
                cluster: String::new(),
            }),
            resource_names: vec!["m/a".into()],
            ..SotwRequest::default()
        }
    }

    /// What a client puts on the wire: each message behind gRPC's prefix
    /// (uncompressed, big-endian length).
    fn wire(messages: &[SotwRequest]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            let bytes = m.encode_to_vec();
            out.push(0);
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    async fn read_all(messages: &[SotwRequest], chunk: usize) -> (Vec<SotwRequest>, usize) {
        let bytes = wire(messages);
        let chunks = bytes.chunks(chunk).map(Bytes::copy_from_slice).collect();
        let (source, req) = Source::wrap(http::Request::new(Body::new(Chunks(chunks))));
        let first = Streaming::new_request(
            Counted::<SotwRequest>::new(Some(source.clone())),
            req.into_body(),
            None,
            Some(MAX_REQUEST_BYTES),
        );
        let mut requests = Requests::new(first, source);
        let (mut got, mut renewed) = (Vec::new(), 0);
        while let Some(m) = requests.message().await.unwrap() {
            got.push(m);
            renewed += usize::from(requests.settle());
        }
        (got, renewed)
    }

    #[tokio::test]
    async fn a_renewed_buffer_loses_no_byte_of_the_requests_after_it() {
        // Large and small requests, cut into chunks that end mid-prefix,
        // mid-message and on a boundary: every request comes out, in order.
        let messages: Vec<SotwRequest> = (0..12)
            .map(|i| request(i, if i % 3 == 0 { 61_000 } else { 0 }))
            .collect();
        for chunk in [1, 7, 100, 1024, 16_384, 61_013, 1 << 20] {
            let (got, renewed) = read_all(&messages, chunk).await;
            assert_eq!(got, messages, "chunks of {chunk}");
            // Only a buffer that grew, and only when tonic holds nothing.
            assert!(renewed <= 4, "chunks of {chunk}: {renewed}");
            if chunk <= 16_384 {
                assert!(renewed >= 1, "chunks of {chunk}: {renewed}");
            }
        }
    }

    #[tokio::test]
    async fn small_requests_keep_their_buffer() {
        let messages: Vec<SotwRequest> = (0..20).map(|i| request(i, 0)).collect();
        let (got, renewed) = read_all(&messages, 64).await;
        assert_eq!(got, messages);
        assert_eq!(renewed, 0);
    }
}
