//! The calls of `envoy.service.secret.v3.SecretDiscoveryService` (routed by
//! `super::grpc`): each stream is a [`Driver`] that feeds one state machine
//! (`super::stream`) with the client's requests, index changes and token
//! re-checks, and is pulled by the gRPC layer for its next response.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use futures_util::Stream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::{Interval, MissedTickBehavior};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};
use tracing::{debug, info};

use super::auth::{Caller, RECHECK};
use super::reader::Requests;
use super::request::SotwRequest;
use super::stream::{fetch, Machine, View};
use super::{Shared, MAX_STREAMS};

/// Most characters of a node id kept for logs.
const NODE_CHARS: usize = 128;

/// A stream of responses as tonic wants it.
pub(super) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The calls, with what every stream shares.
pub(super) struct Service {
    pub(super) shared: Arc<Shared>,
}

enum Event<R> {
    Stop,
    Request(Result<Option<R>, Status>),
    Change,
    ChangesClosed,
    Recheck,
}

/// One open stream.
struct Driver<M: Machine> {
    shared: Arc<Shared>,
    requests: Requests<M::Request>,
    machine: M,
    caller: Caller,
    changes: watch::Receiver<u64>,
    changes_open: bool,
    stop: watch::Receiver<bool>,
    recheck: Interval,
    id: u64,
    node: String,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl<M: Machine> Drop for Driver<M> {
    fn drop(&mut self) {
        self.machine.subscription().release(&self.shared.cache);
        self.shared.metrics.stream_closed();
        debug!(stream = self.id, node = self.node, "sds: stream closed");
    }
}

impl<M: Machine> Driver<M> {
    /// The next response, or the end of the stream.
    async fn next(&mut self) -> Option<Result<M::Response, Status>> {
        loop {
            if self.done || *self.stop.borrow() {
                return None;
            }
            let event = tokio::select! {
                biased;
                _ = self.stop.changed() => Event::Stop,
                m = self.requests.message() => Event::Request(m),
                r = self.changes.changed(), if self.changes_open => {
                    if r.is_ok() { Event::Change } else { Event::ChangesClosed }
                }
                _ = self.recheck.tick() => Event::Recheck,
            };
            match self.handle(event) {
                Ok(Some(response)) => return Some(Ok(response)),
                Ok(None) => continue,
                Err(status) => {
                    self.done = true;
                    if let Some(status) = status {
                        if matches!(
                            status.code(),
                            Code::Unauthenticated | Code::PermissionDenied
                        ) {
                            self.shared.metrics.denied();
                        }
                        info!(stream = self.id, node = self.node, code = ?status.code(),
                            "sds: stream ended: {}", status.message());
                        return Some(Err(status));
                    }
                    return None;
                }
            }
        }
    }

    /// One event: a response to send, nothing, or the end (with a status,
    /// or cleanly).
    fn handle(&mut self, event: Event<M::Request>) -> Result<Option<M::Response>, Option<Status>> {
        match event {
            Event::Stop | Event::Request(Ok(None)) => return Err(None),
            Event::Request(Err(status)) => {
                debug!(
                    stream = self.id,
                    "sds: the client's stream broke: {}",
                    status.message()
                );
                return Err(None);
            }
            Event::ChangesClosed => {
                self.changes_open = false;
                return Ok(None);
            }
            _ => {}
        }
        if let Event::Request(Ok(Some(req))) = &event {
            // A large request's buffer is not kept while the stream waits.
            self.requests.settle();
            if self.node.is_empty() {
                if let Some(node) = M::node_id(req) {
                    self.node = node.chars().take(NODE_CHARS).collect();
                }
            }
        }
        self.caller.recheck(&self.shared.tokens.load())?;
        self.caller.authorize(self.machine.subscription().names())?;
        let index = self.shared.index.load();
        let view = View {
            index: &index,
            cache: &self.shared.cache,
            metrics: &self.shared.metrics,
            stream: self.id,
            node: &self.node,
        };
        match event {
            Event::Request(Ok(Some(req))) => {
                Ok(self.machine.on_request(req, &self.caller, &view)?)
            }
            Event::Change => {
                self.changes.borrow_and_update();
                Ok(self.machine.on_change(&view))
            }
            _ => Ok(None),
        }
    }
}

impl Service {
    fn caller(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        Caller::from_metadata(metadata, &self.shared.tokens.load()).inspect_err(|s| {
            self.shared.metrics.denied();
            info!("sds: refused a call: {}", s.message());
        })
    }

    /// Opens a `StreamSecrets` or `DeltaSecrets` stream.
    pub(super) fn open<M: Machine>(
        &self,
        metadata: &MetadataMap,
        requests: Requests<M::Request>,
        machine: M,
    ) -> Result<Response<ResponseStream<M::Response>>, Status> {
        let caller = self.caller(metadata)?;
        let permit = self
            .shared
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                self.shared.metrics.denied();
                Status::resource_exhausted(format!("at most {MAX_STREAMS} SDS streams may be open"))
            })?;
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut changes = self.shared.changes.clone();
        changes.borrow_and_update();
        let id = self.shared.next_stream.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.stream_opened();
        debug!(stream = id, scope = %caller.scope(), "sds: stream opened");
        let driver = Driver {
            shared: self.shared.clone(),
            requests,
            machine,
            caller,
            changes,
            changes_open: true,
            stop: self.shared.stop.clone(),
            recheck,
            id,
            node: String::new(),
            done: false,
            _permit: permit,
        };
        let stream = futures_util::stream::unfold(driver, |mut d| async move {
            let item = d.next().await?;
            Some((item, d))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    /// `FetchSecrets`: one answer with whatever can be served.
    pub(super) fn fetch(
        &self,
        request: &Request<SotwRequest>,
    ) -> Result<DiscoveryResponse, Status> {
        let caller = self.caller(request.metadata())?;
        let index = self.shared.index.load();
        let view = View {
            index: &index,
            cache: &self.shared.cache,
            metrics: &self.shared.metrics,
            stream: 0,
            node: "",
        };
        fetch(request.get_ref(), &caller, &view).inspect_err(|s| {
            if s.code() == Code::PermissionDenied {
                self.shared.metrics.denied();
            }
        })
    }
}
