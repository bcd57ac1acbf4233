//! The bus of split mode: NATS JetStream. An event travels as a message on the subject
//! `{prefix}.{topic}` with the payload as body and the rest in headers ([`HEADER_EVENT_ID`] and
//! friends), which is all another-language consumer needs to know.
//!
//! Durable subscriptions are durable pull consumers with explicit acknowledgement; live
//! listeners are core subscriptions, pumped into a bounded buffer so that a listener that falls
//! behind learns it did (a core subscription alone would drop messages silently).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{Event, Filters};
use crate::error::{Error, Result};

/// The header holding the event id (also sent as `Nats-Msg-Id`, which JetStream deduplicates
/// on; kept apart so that the id survives a republication under another message id).
pub const HEADER_EVENT_ID: &str = "Civic-Event-Id";
/// The header holding the event's key, the resource name it concerns.
pub const HEADER_KEY: &str = "Civic-Key";
/// The header holding the time the event was written.
pub const HEADER_CREATED_AT: &str = "Civic-Created-At";
/// The header holding the W3C trace context of the change, when there is one.
pub const HEADER_TRACEPARENT: &str = "traceparent";

/// How long JetStream remembers a message id to drop a republished duplicate.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long JetStream waits for a delivery's acknowledgement before delivering it again.
const ACK_WAIT: Duration = Duration::from_secs(60);
/// How many messages a subscription fetches ahead. Small, because [`super::consume`] applies one
/// at a time and the acknowledgement clock runs from delivery.
const PREFETCH: usize = 16;
/// How many events a live listener may fall behind before it is told it lagged.
const LIVE_CAPACITY: usize = 1024;

/// The NATS JetStream bus. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct NatsBus(Arc<Inner>);

struct Inner {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream: String,
    prefix: String,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus").field("stream", &self.0.stream).field("subject_prefix", &self.0.prefix).finish()
    }
}

impl NatsBus {
    /// Connects and makes sure the stream holds the bus's subjects (see [`super::Bus::nats`]).
    // The URL may carry credentials: it stays out of the span.
    #[tracing::instrument(skip(url))]
    pub(super) async fn connect(url: &str, stream: &str, subject_prefix: &str, max_age: Duration) -> Result<Self> {
        check_name("stream", stream)?;
        super::check_tokens(subject_prefix).map_err(|why| Error::invalid("nats_subject_prefix", why))?;
        let client = async_nats::ConnectOptions::new().name("civic").connect(url).await.map_err(Error::unavailable)?;
        let jetstream = jetstream::new(client.clone());
        let subjects = format!("{subject_prefix}.>");
        match jetstream.get_stream(stream).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(Error::unavailable)?;
                let mut config = info.config.clone();
                let mut changed = false;
                if !config.subjects.contains(&subjects) {
                    config.subjects.push(subjects);
                    changed = true;
                }
                if config.duplicate_window != DUPLICATE_WINDOW {
                    config.duplicate_window = DUPLICATE_WINDOW;
                    changed = true;
                }
                // A stream that keeps events forever gets the configured age; one its operator
                // limited keeps its limit.
                if config.max_age.is_zero() {
                    config.max_age = max_age;
                    changed = true;
                }
                if changed {
                    jetstream.update_stream(config).await.map_err(Error::unavailable)?;
                    tracing::info!(stream, "jetstream stream updated");
                }
            }
            Err(e) if is_stream_not_found(&e) => {
                let config = stream::Config {
                    name: stream.to_owned(),
                    subjects: vec![subjects],
                    storage: stream::StorageType::File,
                    duplicate_window: DUPLICATE_WINDOW,
                    max_age,
                    ..Default::default()
                };
                // The server may fail to make a stream's store for a moment (seen as JetStream
                // error 10049 with many streams made at once): try again a few times.
                let mut attempt = 0;
                loop {
                    match jetstream.get_or_create_stream(config.clone()).await {
                        Ok(_) => break,
                        Err(e) if attempt < 4 => {
                            attempt += 1;
                            tracing::warn!(stream, error = %e, attempt, "creating the jetstream stream failed; trying again");
                            tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                        }
                        Err(e) => return Err(Error::unavailable(e)),
                    }
                }
                tracing::info!(stream, "jetstream stream created");
            }
            Err(e) => return Err(Error::unavailable(e)),
        }
        Ok(Self(Arc::new(Inner { client, jetstream, stream: stream.to_owned(), prefix: subject_prefix.to_owned() })))
    }

    /// The JetStream stream's name.
    pub fn stream(&self) -> &str {
        &self.0.stream
    }

    /// The prefix of every subject (`civic` for `civic.<topic>`).
    pub fn subject_prefix(&self) -> &str {
        &self.0.prefix
    }

    /// Publishes into the stream and waits for its acknowledgement.
    pub(super) async fn publish(&self, event: &Event) -> Result<()> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.as_str());
        headers.insert(HEADER_EVENT_ID, event.id.as_str());
        headers.insert(HEADER_KEY, event.key.as_str());
        headers.insert(HEADER_CREATED_AT, event.created_at.as_str());
        if let Some(tp) = &event.traceparent {
            headers.insert(HEADER_TRACEPARENT, tp.as_str());
        }
        let subject = format!("{}.{}", self.0.prefix, event.topic);
        let sent = self.0.jetstream.publish_with_headers(subject, headers, event.payload.clone().into()).await;
        let ack = match sent {
            Ok(ack) => ack.await.map_err(Error::unavailable)?,
            // Larger than the server takes: no retry will change that.
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                return Err(Error::new(
                    tonic::Code::Unavailable,
                    super::REFUSED,
                    "the event is larger than NATS takes",
                )
                .with_source(e));
            }
            Err(e) => return Err(Error::unavailable(e)),
        };
        if ack.duplicate {
            tracing::debug!(event_id = %event.id, "jetstream dropped a republished event");
        }
        Ok(())
    }

    /// Creates (or updates) the durable pull consumer `consumer` and starts fetching from it.
    pub(super) async fn subscribe(&self, consumer: &str, filters: &Filters) -> Result<NatsSubscription> {
        let stream = self.0.jetstream.get_stream(&self.0.stream).await.map_err(Error::unavailable)?;
        let mut subjects: Vec<String> = filters.0.iter().map(|f| format!("{}.{f}", self.0.prefix)).collect();
        let (filter_subject, filter_subjects) =
            if subjects.len() == 1 { (subjects.remove(0), Vec::new()) } else { (String::new(), subjects) };
        let config = pull::Config {
            durable_name: Some(consumer.to_owned()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            filter_subject,
            filter_subjects,
            ..Default::default()
        };
        // Create-or-update: a restart with other topics moves the consumer along.
        let consumer = stream.create_consumer(config).await.map_err(Error::unavailable)?;
        let messages =
            consumer.stream().max_messages_per_batch(PREFETCH).messages().await.map_err(Error::unavailable)?;
        Ok(NatsSubscription { messages, prefix: self.0.prefix.clone() })
    }

    /// A core subscription on the filters' subjects, pumped into a bounded buffer.
    pub(super) async fn listen(&self, filters: &Filters) -> Result<LiveFeed> {
        let mut subscribers = Vec::with_capacity(filters.0.len());
        for f in &filters.0 {
            let subject = format!("{}.{f}", self.0.prefix);
            subscribers.push(self.0.client.subscribe(subject).await.map_err(Error::unavailable)?);
        }
        // The first round trip makes sure the server has the subscriptions before we return,
        // so that an event published after `listen` returns is heard.
        self.0.client.flush().await.map_err(Error::unavailable)?;
        let (feed, sender) = LiveFeed::new();
        tokio::spawn(pump(futures::stream::select_all(subscribers), self.0.prefix.clone(), sender));
        Ok(feed)
    }
}

/// The sending half of a [`LiveFeed`].
pub(super) struct LiveSender {
    events: mpsc::Sender<Event>,
    lagged: Arc<AtomicBool>,
}

/// Moves a core subscription's events into a live feed until the feed is dropped, falls
/// behind (then it is marked lagged) or the subscription ends. Dropping the subscription at the
/// end unsubscribes it.
async fn pump(mut messages: impl futures::Stream<Item = async_nats::Message> + Unpin, prefix: String, to: LiveSender) {
    loop {
        let message = tokio::select! {
            _ = to.events.closed() => return,
            message = messages.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let Some(event) = from_nats(&prefix, &message) else { continue };
        match to.events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                to.lagged.store(true, Ordering::Release);
                tracing::debug!("live listener fell behind");
                return;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// A durable pull consumer's message stream.
pub(super) struct NatsSubscription {
    messages: pull::Stream,
    prefix: String,
}

impl NatsSubscription {
    /// The next message that carries an event; a message without civic headers is acknowledged
    /// and skipped, as nothing could ever apply it.
    pub(super) async fn next(&mut self) -> Option<Result<(Event, jetstream::Message)>> {
        loop {
            let message = match self.messages.next().await? {
                Ok(message) => message,
                Err(e) => return Some(Err(Error::unavailable(e))),
            };
            match from_nats(&self.prefix, &message.message) {
                Some(event) => return Some(Ok((event, message))),
                None => {
                    tracing::warn!(subject = %message.subject, "message without an event id skipped");
                    if let Err(e) = message.ack().await {
                        tracing::warn!(error = %e, "acknowledging a skipped message failed");
                    }
                }
            }
        }
    }
}

/// Acknowledges a delivery.
pub(super) async fn ack(message: &jetstream::Message) -> Result<()> {
    message.ack().await.map_err(|e| Error::unavailable(AckFailed(e)))
}

/// Refuses a delivery, to have it again after a delay that doubles with each attempt (from half
/// a second up to a minute).
pub(super) async fn nak(message: &jetstream::Message) {
    let attempts = message.info().map(|i| i.delivered).unwrap_or(1).clamp(1, 8);
    let delay = Duration::from_millis(500 << (attempts - 1)).min(Duration::from_secs(60));
    if let Err(e) = message.ack_with(jetstream::AckKind::Nak(Some(delay))).await {
        // The delivery comes again after the acknowledgement wait all the same.
        tracing::warn!(error = %e, "refusing a delivery failed");
    }
}

/// A live listener's buffer and whether it overflowed.
pub(super) struct LiveFeed {
    events: mpsc::Receiver<Event>,
    lagged: Arc<AtomicBool>,
}

impl LiveFeed {
    fn new() -> (Self, LiveSender) {
        let (sender, events) = mpsc::channel(LIVE_CAPACITY);
        let lagged = Arc::new(AtomicBool::new(false));
        (Self { events, lagged: lagged.clone() }, LiveSender { events: sender, lagged })
    }

    /// The next event; `None` once the listener lagged (without handing out the stale rest of
    /// the buffer) or the connection closed.
    pub(super) async fn recv(&mut self) -> Option<Event> {
        if self.lagged.load(Ordering::Acquire) {
            return None;
        }
        let event = self.events.recv().await?;
        if self.lagged.load(Ordering::Acquire) { None } else { Some(event) }
    }
}

/// The event a message carries: the topic from the subject, the rest from the headers.
fn from_nats(prefix: &str, message: &async_nats::Message) -> Option<Event> {
    let topic = message.subject.as_str().strip_prefix(prefix)?.strip_prefix('.')?.to_owned();
    let headers = message.headers.as_ref()?;
    let get = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    let id = get(HEADER_EVENT_ID).or_else(|| get(async_nats::header::NATS_MESSAGE_ID.as_ref()))?;
    Some(Event {
        id,
        topic,
        key: get(HEADER_KEY).unwrap_or_default(),
        payload: message.payload.to_vec(),
        traceparent: get(HEADER_TRACEPARENT),
        created_at: get(HEADER_CREATED_AT).unwrap_or_default(),
    })
}

fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(js)
        if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Checks a JetStream name: no dots, wildcards or whitespace.
fn check_name(field: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(Error::invalid(field, "letters, digits, '-' and '_' only")) }
}

#[derive(Debug, thiserror::Error)]
#[error("acknowledging to jetstream failed")]
struct AckFailed(#[source] async_nats::Error);

#[cfg(test)]
mod tests {
    use super::*;

    fn message(prefix: &str, n: usize) -> async_nats::Message {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HEADER_EVENT_ID, format!("id-{n}").as_str());
        headers.insert(HEADER_KEY, "streets/a/things/1");
        headers.insert(HEADER_CREATED_AT, "2026-11-28T00:00:00.000000Z");
        async_nats::Message {
            subject: format!("{prefix}.test.thing.happened").into(),
            reply: None,
            payload: vec![n as u8].into(),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        }
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_is_told_so() {
        let (mut feed, sender) = LiveFeed::new();
        let messages: Vec<_> = (0..LIVE_CAPACITY + 10).map(|n| message("p", n)).collect();
        // Nobody reads while the pump runs: the buffer fills and the pump gives up.
        pump(futures::stream::iter(messages), "p".into(), sender).await;
        assert_eq!(feed.recv().await, None, "lag is reported, not the stale buffer");
        assert_eq!(feed.recv().await, None);
    }

    #[tokio::test]
    async fn a_listener_that_keeps_up_hears_every_event_in_order() {
        let (mut feed, sender) = LiveFeed::new();
        let mut messages: Vec<_> = (0..3).map(|n| message("p", n)).collect();
        // Foreign messages are skipped: another prefix, no event id.
        messages.insert(1, message("other", 9));
        messages.insert(2, async_nats::Message { headers: None, ..message("p", 8) });
        pump(futures::stream::iter(messages), "p".into(), sender).await;
        for n in 0..3 {
            let event = feed.recv().await.expect("an event");
            assert_eq!(event.id, format!("id-{n}"));
            assert_eq!(event.topic, "test.thing.happened");
            assert_eq!(event.key, "streets/a/things/1");
            assert_eq!(event.payload, vec![n as u8]);
            assert_eq!(event.traceparent, None);
        }
        assert_eq!(feed.recv().await, None, "the feed ends with its subscription");
    }
}
