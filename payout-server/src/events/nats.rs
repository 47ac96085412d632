//! The NATS JetStream publisher of events: each event published as its JSON to
//! `{prefix}.{type}` (`payouts.events.payout.status_changed`, ...) with the event id as the
//! `Nats-Msg-Id` header ([`async_nats::header::NATS_MESSAGE_ID`]), so the stream stores an event delivered twice (a crash between the publish
//! and the relay's record, a lease that ran out) once, within its duplicate window.
//!
//! A delivery counts only when the stream has stored it: [`NatsSink::deliver`] awaits the
//! stream's acknowledgement (`PubAck`; one marked `duplicate` is a delivery too). No answer in time,
//! no connection or no stream for the subject are retryable: the relay tries again with back-off.
//! Of one payout the relay hands over one event at a time, so the stream holds a payout's events in
//! order.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use async_nats::{HeaderMap, ServerAddr};
use async_trait::async_trait;
use payout_core::events::{EventType, PayoutEvent, PayoutEventSink, SinkError};
use payout_core::{Error, Result};
use tokio::sync::OnceCell;

/// The async-nats client this sink is built on, for a host that reads the stream with the same one.
pub use async_nats;

/// The event's type, also a header (as the webhook sender sends it).
pub const EVENT_TYPE_HEADER: &str = "Payouts-Event-Type";
/// The default subject prefix.
pub const DEFAULT_SUBJECT_PREFIX: &str = "payouts.events";
/// The default stream the sink makes sure of.
pub const DEFAULT_STREAM: &str = "PAYOUTS_EVENTS";

/// The connection token: never in `Debug`, logs or errors.
#[derive(Clone)]
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([REDACTED])")
    }
}

/// The stream the sink creates when it is missing (an existing stream is used as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// Its name (no spaces, `.`, `*` or `>`). Default: `PAYOUTS_EVENTS`.
    pub name: String,
    /// How long JetStream remembers a message id to drop a duplicate. Default: 10 min, above the
    /// relay's lease (60 s by default), after which an event whose delivery was not recorded is
    /// delivered again. Past the window a consumer deduplicates by the event id itself.
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            name: DEFAULT_STREAM.into(),
            duplicate_window: Duration::from_secs(600),
        }
    }
}

/// Where and how events are published. Every default is written down.
#[derive(Clone)]
pub struct NatsSinkConfig {
    servers: Vec<ServerAddr>,
    token: Option<Token>,
    subject_prefix: String,
    stream: Option<StreamSettings>,
    /// How long a publish may wait for the stream's acknowledgement, and a connection attempt for
    /// the server, before the delivery counts as failed (`PAYOUTS_EVENTS_NATS_TIMEOUT_SECS`,
    /// default 10 s). Keep it below the relay's lease.
    pub timeout: Duration,
}

impl std::fmt::Debug for NatsSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hosts and ports only: a server URL may carry a user and password.
        let servers: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("{}:{}", s.host(), s.port()))
            .collect();
        f.debug_struct("NatsSinkConfig")
            .field("servers", &servers)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("subject_prefix", &self.subject_prefix)
            .field("stream", &self.stream)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl NatsSinkConfig {
    /// Events to the servers of `url` (`nats://host:4222`, `tls://...`, several separated by
    /// commas), under the subject prefix [`DEFAULT_SUBJECT_PREFIX`], making sure of the stream
    /// [`StreamSettings::default`].
    pub fn new(url: &str) -> Result<Self> {
        let servers = url
            .split(',')
            .map(|s| s.trim().parse::<ServerAddr>())
            .collect::<std::result::Result<Vec<_>, _>>()
            // The parser's message may quote the URL, credentials and all: not passed on.
            .map_err(|_| Error::InvalidInput("the events NATS URL must be nats:// or tls:// URLs".into()))?;
        if servers.is_empty() || servers.iter().any(|s| s.host().is_empty()) {
            return Err(Error::InvalidInput("the events NATS URL names no server".into()));
        }
        Ok(NatsSinkConfig {
            servers,
            token: None,
            subject_prefix: DEFAULT_SUBJECT_PREFIX.into(),
            stream: Some(StreamSettings::default()),
            timeout: Duration::from_secs(10),
        })
    }

    /// Authenticates with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token(token.into()));
        self
    }

    /// Publishes under `prefix` (dot-separated tokens of letters, digits, `_` and `-`).
    pub fn with_subject_prefix(mut self, prefix: &str) -> Result<Self> {
        let valid_token =
            |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !prefix.split('.').all(valid_token) {
            return Err(Error::InvalidInput(format!(
                "the events NATS subject prefix {prefix:?} must be dot-separated tokens of letters, digits, _ and -"
            )));
        }
        self.subject_prefix = prefix.to_string();
        Ok(self)
    }

    /// Makes sure of this stream (taking `{prefix}.>`) before the first publish; `None`: the
    /// host manages the stream, and without one a publish fails (retryably) with no stream found.
    pub fn with_stream(mut self, stream: Option<StreamSettings>) -> Result<Self> {
        if let Some(s) = &stream
            && (s.name.is_empty()
                || s.name
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>')))
        {
            return Err(Error::InvalidInput(format!(
                "the events NATS stream name {:?} must not be empty or hold spaces, '.', '*' or '>'",
                s.name
            )));
        }
        self.stream = stream;
        Ok(self)
    }

    /// The subject prefix.
    pub fn subject_prefix(&self) -> &str {
        &self.subject_prefix
    }

    /// The stream made sure of, if any.
    pub fn stream(&self) -> Option<&StreamSettings> {
        self.stream.as_ref()
    }

    /// The subject an event of type `t` is published to: `{prefix}.{type}`, the type's name made
    /// subject-safe (its dots kept as separators, so `payouts.events.payout.>` takes every
    /// payout event; any other character outside letters, digits, `_` and `-` becomes `_`).
    pub fn subject_for(&self, t: EventType) -> String {
        let name: String = t
            .as_str()
            .split('.')
            .filter(|token| !token.is_empty())
            .map(|token| {
                token
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(".");
        format!("{}.{name}", self.subject_prefix)
    }

    /// From `PAYOUTS_EVENTS_NATS_URL`, `PAYOUTS_EVENTS_NATS_TOKEN` (optional),
    /// `PAYOUTS_EVENTS_NATS_SUBJECT_PREFIX` (default `payouts.events`), `PAYOUTS_EVENTS_NATS_STREAM`
    /// (default `PAYOUTS_EVENTS`; `-` for none: the host manages the stream),
    /// `PAYOUTS_EVENTS_NATS_DUPLICATE_WINDOW_SECS` (default 600) and
    /// `PAYOUTS_EVENTS_NATS_TIMEOUT_SECS` (default 10); `None` without a URL.
    pub fn from_env() -> Result<Option<Self>> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let secs = |k: &str| -> Result<Option<Duration>> {
            var(k)
                .map(|v| {
                    v.trim()
                        .parse()
                        .map(Duration::from_secs)
                        .map_err(|_| Error::InvalidInput(format!("{k} must be seconds")))
                })
                .transpose()
        };
        let Some(url) = var("PAYOUTS_EVENTS_NATS_URL") else {
            return Ok(None);
        };
        let mut config = NatsSinkConfig::new(&url)?;
        if let Some(token) = var("PAYOUTS_EVENTS_NATS_TOKEN") {
            config = config.with_token(token);
        }
        if let Some(prefix) = var("PAYOUTS_EVENTS_NATS_SUBJECT_PREFIX") {
            config = config.with_subject_prefix(prefix.trim())?;
        }
        let mut stream = StreamSettings::default();
        if let Some(window) = secs("PAYOUTS_EVENTS_NATS_DUPLICATE_WINDOW_SECS")? {
            stream.duplicate_window = window;
        }
        let stream = match var("PAYOUTS_EVENTS_NATS_STREAM") {
            Some(name) if name.trim() == "-" => None,
            Some(name) => Some(StreamSettings {
                name: name.trim().to_string(),
                ..stream
            }),
            None => Some(stream),
        };
        config = config.with_stream(stream)?;
        if let Some(timeout) = secs("PAYOUTS_EVENTS_NATS_TIMEOUT_SECS")? {
            config.timeout = timeout;
        }
        Ok(Some(config))
    }
}

/// Publishes each event to JetStream and counts it delivered once the stream has stored it.
pub struct NatsSink {
    jetstream: jetstream::Context,
    config: NatsSinkConfig,
    stream_ready: OnceCell<()>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// A publisher with `config`. Returns at once even when no server answers yet: the client
    /// keeps connecting in the background, and deliveries fail (retryably) until it is connected.
    pub async fn connect(config: NatsSinkConfig) -> Result<Self> {
        let mut options = match &config.token {
            Some(token) => async_nats::ConnectOptions::with_token(token.0.clone()),
            None => async_nats::ConnectOptions::new(),
        };
        options = options
            .name("payouts-events")
            .connection_timeout(config.timeout)
            // JetStream API calls (the stream's check) wait this long; the default is 10 s.
            .request_timeout(Some(config.timeout))
            .retry_on_initial_connect();
        let client = options
            .connect(config.servers.clone())
            .await
            .map_err(|e| Error::InvalidInput(format!("the events NATS client: {}", e.kind())))?;
        let jetstream = jetstream::ContextBuilder::new().timeout(config.timeout).build(client);
        Ok(NatsSink {
            jetstream,
            config,
            stream_ready: OnceCell::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &NatsSinkConfig {
        &self.config
    }

    /// Makes sure of the configured stream, once per sink (again after a failure).
    async fn ensure_stream(&self) -> std::result::Result<(), SinkError> {
        let Some(stream) = &self.config.stream else {
            return Ok(());
        };
        self.stream_ready
            .get_or_try_init(|| async {
                self.jetstream
                    .get_or_create_stream(jetstream::stream::Config {
                        name: stream.name.clone(),
                        subjects: vec![format!("{}.>", self.config.subject_prefix)],
                        duplicate_window: stream.duplicate_window,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| SinkError::Retryable {
                        message: format!("the NATS stream {} could not be made sure of", stream.name),
                        source: Some(Box::new(e)),
                    })
            })
            .await
            .map(|_| ())
    }
}

fn publish_failed(
    kind: PublishErrorKind,
    subject: &str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> SinkError {
    let message = match kind {
        PublishErrorKind::TimedOut => format!("NATS did not acknowledge {subject} in time"),
        PublishErrorKind::StreamNotFound => format!("no NATS stream takes {subject}"),
        PublishErrorKind::BrokenPipe => "the NATS connection was lost".into(),
        _ => format!("NATS refused {subject}"),
    };
    // All retryable: a stream limit, a missing stream or a lost server can be fixed while the
    // relay backs off; the dead letters take what never succeeds.
    SinkError::Retryable {
        message,
        source: Some(Box::new(source)),
    }
}

#[async_trait]
impl PayoutEventSink for NatsSink {
    async fn deliver(&self, event: &PayoutEvent) -> std::result::Result<(), SinkError> {
        let body = serde_json::to_vec(event).map_err(|e| SinkError::Permanent {
            message: "the event could not be written as JSON".into(),
            source: Some(Box::new(e)),
        })?;
        self.ensure_stream().await?;
        let subject = self.config.subject_for(event.event_type);
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.as_str());
        headers.insert(EVENT_TYPE_HEADER, event.event_type.as_str());
        let ack = self
            .jetstream
            .publish_with_headers(subject.clone(), headers, body.into())
            .await
            .map_err(|e| publish_failed(e.kind(), &subject, e))?;
        // Delivered only once the stream has stored it; a duplicate was stored before.
        let ack = ack.await.map_err(|e| publish_failed(e.kind(), &subject, e))?;
        if ack.duplicate {
            tracing::debug!(event = %event.id, stream = %ack.stream, "the stream already held this event");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_in_debug() {
        let config = NatsSinkConfig::new("nats://events-user:s3cr3t-pass@nats.example:4222")
            .unwrap()
            .with_token("tok_0123456789abcdef");
        let shown = format!("{config:?}");
        for secret in ["s3cr3t-pass", "events-user", "tok_0123456789abcdef"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("nats.example:4222"), "{shown}");
        let bad = NatsSinkConfig::new("http://user:s3cr3t-pass@h")
            .unwrap_err()
            .to_string();
        assert!(!bad.contains("s3cr3t-pass"), "{bad}");
    }

    #[test]
    fn subjects_are_per_type_under_the_prefix() {
        let config = NatsSinkConfig::new("nats://127.0.0.1:4222").unwrap();
        assert_eq!(
            config.subject_for(EventType::PayoutStatusChanged),
            "payouts.events.payout.status_changed"
        );
        let config = config.with_subject_prefix("acme.payouts-v1").unwrap();
        assert_eq!(
            config.subject_for(EventType::RunCompleted),
            "acme.payouts-v1.run.completed"
        );
        for t in EventType::ALL {
            let subject = config.subject_for(t);
            assert!(
                subject
                    .split('.')
                    .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))),
                "{subject}"
            );
        }
        for bad in ["", "a..b", "a.*", "a.>", "a b", "a."] {
            assert!(
                NatsSinkConfig::new("nats://h")
                    .unwrap()
                    .with_subject_prefix(bad)
                    .is_err(),
                "{bad:?}"
            );
        }
        let no_name = StreamSettings {
            name: "A.B".into(),
            ..StreamSettings::default()
        };
        assert!(
            NatsSinkConfig::new("nats://h")
                .unwrap()
                .with_stream(Some(no_name))
                .is_err()
        );
        assert!(NatsSinkConfig::new("").is_err());
    }
}
