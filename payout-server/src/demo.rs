//! The demo server's wiring (feature `demo`): what a host app does to run `payouts` as a service.
//!
//! - `DATABASE_URL`: `sqlite://…` (default: `sqlite://payouts-demo.db?mode=rwc` in the working directory) or
//!   `postgres://…`; migrated on start. Host tables `doctor_profiles` and `appointments` are created and
//!   filled with sample doctors and last month's completed consultations when empty (`PAYOUTS_SAMPLE_DATA=0`
//!   turns that off), and last month is calculated so the dashboard has data.
//! - Providers come from their environment variables (`STRIPE_SECRET_KEY`, `PAYPAL_CLIENT_ID`, …); a provider
//!   without credentials falls back to the clearly labelled simulated provider, said in the log at start and
//!   in the audit trail of every simulated attempt. Simulated webhooks carry `x-simulation-token:
//!   $PAYOUTS_SIMULATION_TOKEN` (random when unset, printed at start).
//! - In the background: reconciliation of quiet PROCESSING payouts every `PAYOUTS_RECONCILE_SECS` (60), each
//!   claim under a lease of `PAYOUTS_RECONCILE_LEASE_SECS` (600), and the monthly calculation at 00:00 UTC on
//!   the 1st (`0 0 1 * *`).
//! - Clawbacks: `PAYOUTS_REVERSED_STATUSES` (e.g. `REFUNDED,VOIDED`) and `PAYOUTS_REVERSED_AT_COLUMN` (e.g.
//!   `refunded_at`) say how `appointments` records a consultation taken back; unset, none is read.
//! - Logs ([`init_logging`]): `RUST_LOG` (default `info`), `PAYOUTS_LOG_FORMAT=json` for one JSON object a line.
//! - Metrics: Prometheus text at `http://$PAYOUTS_METRICS_ADDR/metrics`, on an address of its own so that it
//!   is never public by accident (unset: no metrics are recorded). See [`serve_metrics`].
//! - Bank files (`/api/admin/bank-files`): CSV always; pain.001 with `PAYOUTS_DEBTOR_NAME` and
//!   `PAYOUTS_DEBTOR_ACCOUNT`, NACHA with the `PAYOUTS_NACHA_*` settings (see
//!   [`BankFileConfig`](payout_providers::bank::BankFileConfig)); a format half configured refuses to start.
//! - Events ([`payout_core::events`]): a relay delivers the outbox's events every
//!   `PAYOUTS_EVENTS_POLL_MS` (1000) to the doctors' notifications, logged ([`LogNotifier`]), and, with
//!   `PAYOUTS_EVENTS_WEBHOOK_URL` and `PAYOUTS_EVENTS_WEBHOOK_SECRET`, to the host's webhook (signed; see
//!   [`WebhookSinkConfig::from_env`]); built with the feature `nats` too, with `PAYOUTS_EVENTS_NATS_URL`, to
//!   NATS JetStream (`crate::events::nats::NatsSinkConfig::from_env`). `PAYOUTS_EVENTS_MAX_TRIES` (10) tries before a dead letter,
//!   `PAYOUTS_EVENTS_LEASE_SECS` (60) of lease per claim, back-off from `PAYOUTS_EVENTS_BACKOFF_SECS` (5)
//!   doubling up to `PAYOUTS_EVENTS_BACKOFF_MAX_SECS` (3600).
//! - Statements carry the platform's name from `PAYOUTS_PLATFORM_NAME` (default "Doctor payouts").
//! - Graceful shutdown on SIGTERM or Ctrl-C, within `PAYOUTS_SHUTDOWN_GRACE_SECS` (30); see [`serve_until`].
//! - Signing in to the dashboard: with the development secret (`NEXTAUTH_SECRET` unset, so only on
//!   loopback with simulated providers), a development login picks an admin without pasting a
//!   token ([`dev_login`]); otherwise a token is pasted, or a host's own authenticator is used.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use payout_core::PayoutProvider;
use payout_core::domain::{Actor, Period, Provider};
use payout_core::funds::BalanceSource;
use payout_core::service::{
    CalculationPolicy, PayoutService, PayoutServiceBuilder, PerformanceConfig, ReconcilePolicy, ServicePolicy,
};
use payout_core::simulated::{SimulatedProvider, SimulatedSettlement};
use payout_core::{Error, Result};
use payout_store_sqlx::{
    ConsultationTable, PgStore, RecipientTable, Reversals, SqlConsultationSource, SqlRecipientDirectory, SqliteStore,
};

use axum::Router;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use payout_core::events::notify::{DoctorMessage, FanOut, Notifier, NotifyingSink};
use payout_core::events::{EventOutbox, EventRelay, RelayConfig, SinkError};

use crate::events::webhook::{WebhookSink, WebhookSinkConfig};
use crate::{AppState, DashboardConfig, ServerConfig, api, api_router, dashboard_router, observe, webhook_router};

pub mod dev_login;

pub use dev_login::DevLogin;

/// The development secret used when `NEXTAUTH_SECRET` is unset (logged loudly).
pub const DEV_SECRET: &str = "payouts-demo-secret-change-me";

/// How long a shutdown waits by default (`PAYOUTS_SHUTDOWN_GRACE_SECS`).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Starts logging to standard error: `RUST_LOG` filters (default `info`; e.g.
/// `RUST_LOG=info,payout_core=debug`), and `PAYOUTS_LOG_FORMAT=json` writes one JSON object a line
/// with the current spans (payout id, attempt key, provider, request id) as fields. Fails when
/// `RUST_LOG` or `PAYOUTS_LOG_FORMAT` does not parse; a subscriber set already is kept.
pub fn init_logging() -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| Error::InvalidInput(format!("RUST_LOG {v:?} does not parse: {e}")))?
        }
        _ => EnvFilter::new("info"),
    };
    let json = match std::env::var("PAYOUTS_LOG_FORMAT").unwrap_or_default().trim() {
        "" | "text" => false,
        "json" => true,
        other => {
            return Err(Error::InvalidInput(format!(
                "PAYOUTS_LOG_FORMAT {other:?}: use text or json"
            )));
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none());
    let set = if json {
        builder.json().with_current_span(true).with_span_list(true).try_init()
    } else {
        builder.with_target(false).try_init()
    };
    if set.is_err() {
        // A subscriber is set already (a host's, or a test's): logs go there.
        tracing::debug!("logging was set up already");
    }
    Ok(())
}

/// Demo settings, read from the environment.
#[derive(Clone)]
pub struct DemoConfig {
    /// Where to listen (`PAYOUTS_ADDR`, default `127.0.0.1:3000`).
    pub addr: SocketAddr,
    /// The database (`DATABASE_URL`).
    pub database_url: String,
    /// The token secret (`NEXTAUTH_SECRET`).
    pub jwt_secret: String,
    /// The simulated providers' webhook token (`PAYOUTS_SIMULATION_TOKEN`).
    pub simulation_token: String,
    /// Seed sample data into empty host tables (`PAYOUTS_SAMPLE_DATA`, default on).
    pub sample_data: bool,
    /// Seconds between reconciliation passes (`PAYOUTS_RECONCILE_SECS`, default 60; 0 = off).
    pub reconcile_every: u64,
    /// How long a reconciliation claim belongs to the instance that made it: checks claimed by an
    /// instance that died are looked at again once it runs out (`PAYOUTS_RECONCILE_LEASE_SECS`;
    /// default `None`: [`ReconcilePolicy::default`]'s 10 minutes). Longer than a pass takes.
    pub reconcile_lease: Option<Duration>,
    /// The creator of a manual payout may not approve it, and a resolution waits for a second admin
    /// (`PAYOUTS_FOUR_EYES`, default on; `0` turns it off).
    pub four_eyes: bool,
    /// The approver of any payout may not trigger it (`PAYOUTS_APPROVER_MAY_NOT_TRIGGER`, default off;
    /// `1` turns it on).
    pub approver_may_not_trigger: bool,
    /// Amounts above which a payout needs a second approval, one per currency
    /// (`PAYOUTS_SECOND_APPROVAL_ABOVE`, e.g. `USD:5000,KES:500000`; default none).
    pub second_approval_above: Vec<payout_core::money::Money>,
    /// How the host's `appointments` table records a consultation taken back, for clawbacks
    /// (`PAYOUTS_REVERSED_STATUSES` and `PAYOUTS_REVERSED_AT_COLUMN`; default none: no clawbacks).
    pub reversals: Option<Reversals>,
    /// Reverse proxies whose `X-Forwarded-For` names the client, for rate limits and M-Pesa's
    /// source-address check (`PAYOUTS_TRUSTED_PROXIES`, addresses and CIDR blocks, comma-separated, e.g.
    /// `10.0.0.0/8,127.0.0.1`; default none: the socket peer is the client).
    pub trusted_proxies: crate::limits::TrustedProxies,
    /// Where Prometheus scrapes `/metrics` (`PAYOUTS_METRICS_ADDR`, e.g. `127.0.0.1:9464`; default
    /// none: no metrics are recorded or served).
    pub metrics_addr: Option<SocketAddr>,
    /// How long a shutdown waits for requests in flight (a bulk trigger's provider calls) and the
    /// background jobs' current pass (`PAYOUTS_SHUTDOWN_GRACE_SECS`, default 30).
    pub shutdown_grace: Duration,
    /// Where and how events are delivered (`PAYOUTS_EVENTS_*`).
    pub events: DemoEvents,
    /// The platform's name on statements (`PAYOUTS_PLATFORM_NAME`, default
    /// [`DEFAULT_PLATFORM_NAME`](crate::DEFAULT_PLATFORM_NAME)).
    pub platform_name: String,
}

/// The demo's event delivery settings (see the module docs for the variables).
#[derive(Debug, Clone)]
pub struct DemoEvents {
    /// The host's webhook, if any.
    pub webhook: Option<WebhookSinkConfig>,
    /// The host's NATS JetStream, if any.
    #[cfg(feature = "nats")]
    pub nats: Option<crate::events::nats::NatsSinkConfig>,
    /// The relay's settings.
    pub relay: RelayConfig,
    /// How often the relay looks for due events. Default: 1 s.
    pub poll: Duration,
}

impl Default for DemoEvents {
    fn default() -> Self {
        DemoEvents {
            webhook: None,
            #[cfg(feature = "nats")]
            nats: None,
            relay: RelayConfig::default(),
            poll: Duration::from_secs(1),
        }
    }
}

impl DemoEvents {
    /// Reads `PAYOUTS_EVENTS_*`.
    pub fn from_env() -> Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let number = |k: &str| -> Result<Option<u64>> {
            var(k)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| Error::InvalidInput(format!("{k} must be a whole number")))
                })
                .transpose()
        };
        let mut events = DemoEvents {
            webhook: WebhookSinkConfig::from_env()?,
            #[cfg(feature = "nats")]
            nats: crate::events::nats::NatsSinkConfig::from_env()?,
            ..DemoEvents::default()
        };
        if let Some(n) = number("PAYOUTS_EVENTS_MAX_TRIES")? {
            events.relay.max_tries = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        }
        if let Some(s) = number("PAYOUTS_EVENTS_LEASE_SECS")? {
            events.relay.lease = Duration::from_secs(s.max(1));
        }
        if let Some(s) = number("PAYOUTS_EVENTS_BACKOFF_SECS")? {
            events.relay.backoff.base = Duration::from_secs(s);
        }
        if let Some(s) = number("PAYOUTS_EVENTS_BACKOFF_MAX_SECS")? {
            events.relay.backoff.max = Duration::from_secs(s);
        }
        if let Some(ms) = number("PAYOUTS_EVENTS_POLL_MS")? {
            events.poll = Duration::from_millis(ms.max(10));
        }
        Ok(events)
    }
}

/// The demo's [`Notifier`]: each message to a doctor is logged (a host sends an SMS or an e-mail).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

#[async_trait::async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, message: &DoctorMessage) -> std::result::Result<(), SinkError> {
        tracing::info!(doctor = %message.doctor_id, event = %message.event_id, text = %message.text, "notification to a doctor");
        Ok(())
    }
}

impl std::fmt::Debug for DemoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoConfig")
            .field("addr", &self.addr)
            .field("sample_data", &self.sample_data)
            .field("reconcile_every", &self.reconcile_every)
            .field("reconcile_lease", &self.reconcile_lease)
            .field("four_eyes", &self.four_eyes)
            .field("approver_may_not_trigger", &self.approver_may_not_trigger)
            .field("second_approval_above", &self.second_approval_above)
            .field("reversals", &self.reversals)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("metrics_addr", &self.metrics_addr)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("events", &self.events)
            .field("platform_name", &self.platform_name)
            .finish_non_exhaustive()
    }
}

impl DemoConfig {
    /// Reads the environment.
    pub fn from_env() -> Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let addr = var("PAYOUTS_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into());
        let addr = addr
            .parse()
            .map_err(|_| Error::InvalidInput(format!("PAYOUTS_ADDR {addr:?} is not host:port")))?;
        let jwt_secret = var("NEXTAUTH_SECRET").unwrap_or_else(|| {
            tracing::warn!(
                "NEXTAUTH_SECRET is not set: using the public development secret; never do this in production"
            );
            DEV_SECRET.into()
        });
        let reconcile_every = match var("PAYOUTS_RECONCILE_SECS") {
            Some(v) => v
                .parse()
                .map_err(|_| Error::InvalidInput("PAYOUTS_RECONCILE_SECS must be seconds".into()))?,
            None => 60,
        };
        let reconcile_lease = match var("PAYOUTS_RECONCILE_LEASE_SECS") {
            Some(v) => Some(Duration::from_secs(
                v.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    Error::InvalidInput("PAYOUTS_RECONCILE_LEASE_SECS must be seconds, at least 1".into())
                })?,
            )),
            None => None,
        };
        let metrics_addr = match var("PAYOUTS_METRICS_ADDR") {
            Some(a) => Some(
                a.parse()
                    .map_err(|_| Error::InvalidInput(format!("PAYOUTS_METRICS_ADDR {a:?} is not host:port")))?,
            ),
            None => None,
        };
        let shutdown_grace = match var("PAYOUTS_SHUTDOWN_GRACE_SECS") {
            Some(v) => Duration::from_secs(
                v.parse()
                    .map_err(|_| Error::InvalidInput("PAYOUTS_SHUTDOWN_GRACE_SECS must be seconds".into()))?,
            ),
            None => DEFAULT_SHUTDOWN_GRACE,
        };
        Ok(DemoConfig {
            addr,
            database_url: var("DATABASE_URL").unwrap_or_else(|| "sqlite://payouts-demo.db?mode=rwc".into()),
            jwt_secret,
            simulation_token: var("PAYOUTS_SIMULATION_TOKEN").unwrap_or_else(random_token),
            sample_data: var("PAYOUTS_SAMPLE_DATA").is_none_or(|v| v != "0" && v != "false"),
            reconcile_every,
            reconcile_lease,
            four_eyes: var("PAYOUTS_FOUR_EYES").is_none_or(|v| v != "0" && v != "false"),
            approver_may_not_trigger: var("PAYOUTS_APPROVER_MAY_NOT_TRIGGER").is_some_and(|v| v == "1" || v == "true"),
            second_approval_above: ServicePolicy::parse_second_approval_above(
                &var("PAYOUTS_SECOND_APPROVAL_ABOVE").unwrap_or_default(),
            )?,
            reversals: Reversals::from_vars(var)?,
            trusted_proxies: var("PAYOUTS_TRUSTED_PROXIES")
                .unwrap_or_default()
                .parse()
                .map_err(|e| Error::InvalidInput(format!("PAYOUTS_TRUSTED_PROXIES: {e}")))?,
            metrics_addr,
            shutdown_grace,
            events: DemoEvents::from_env()?,
            platform_name: var("PAYOUTS_PLATFORM_NAME")
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| crate::DEFAULT_PLATFORM_NAME.to_string()),
        })
    }
}

impl DemoConfig {
    /// The engine's policy these settings ask for (the rest as [`ServicePolicy::default`]).
    pub fn policy(&self) -> ServicePolicy {
        ServicePolicy {
            four_eyes: self.four_eyes,
            approver_may_not_trigger: self.approver_may_not_trigger,
            second_approval_above: self.second_approval_above.clone(),
            reconcile: reconcile_policy(self),
            ..ServicePolicy::default()
        }
    }
}

fn random_token() -> String {
    // Two v4 UUIDs: 244 random bits from the OS generator.
    format!("{}{}", uuid_like(), uuid_like())
}

fn uuid_like() -> String {
    let mut buf = [0u8; 16];
    if getrandom(&mut buf).is_err() {
        // Fall back to time-derived bytes; still unguessable enough for a demo-only simulation token.
        let n = Utc::now().timestamp_nanos_opt().unwrap_or_default().to_le_bytes();
        buf[..8].copy_from_slice(&n);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// The running pieces.
pub struct Demo {
    /// The engine.
    pub service: Arc<PayoutService>,
    /// The HTTP state.
    pub state: AppState,
    /// Providers that are simulated because their credentials are missing.
    pub simulated: Vec<Provider>,
    /// The dashboard's development login, when the demo runs with the development secret
    /// ([`DevLogin::for_demo`]); [`serve`] offers it.
    pub dev_login: Option<DevLogin>,
    /// The store's event outbox (the same store as the service's).
    pub outbox: Arc<dyn EventOutbox>,
}

/// Refuses the public development secret ([`DEV_SECRET`], used when `NEXTAUTH_SECRET` is unset)
/// where anyone could use it: when the server listens beyond loopback, or when a real provider is
/// configured (anyone who reads this crate's source could then mint an admin token and move money).
pub fn check_development_secret(secret: &str, addr: SocketAddr, real_providers: &[Provider]) -> Result<()> {
    if secret != DEV_SECRET {
        return Ok(());
    }
    let why = if !addr.ip().is_loopback() {
        format!("it listens on {addr}, beyond loopback")
    } else if let Some(p) = real_providers.first() {
        format!("a real provider is configured ({p})")
    } else {
        return Ok(());
    };
    Err(Error::InvalidInput(format!(
        "NEXTAUTH_SECRET is not set and {why}: the public development secret would let anyone mint an admin \
         token; set NEXTAUTH_SECRET (refusing to start)"
    )))
}

/// Connects, migrates, seeds and wires everything. Refuses, before touching the database, to run with
/// the public development secret beyond loopback or with a real provider
/// ([`check_development_secret`]).
pub async fn build(config: &DemoConfig) -> Result<Demo> {
    let providers = providers_from_env(&config.simulation_token);
    let real: Vec<Provider> = providers
        .iter()
        .filter(|s| !s.adapter.capabilities().simulated)
        .map(|s| s.adapter.provider())
        .collect();
    let dev_login = DevLogin::for_demo(&config.jwt_secret, config.addr, &real)?;
    let url = config.database_url.as_str();
    let appointments = ConsultationTable {
        reversals: config.reversals.clone(),
        ..ConsultationTable::default()
    };
    // Before the database is touched: a bad setting seeds and migrates nothing.
    appointments.validate()?;
    let bank_files = payout_providers::bank::BankFileConfig::from_env()
        .map_err(|e| Error::InvalidInput(format!("bank file settings: {e}")))?;
    let mut performance = PerformanceConfig::default();
    let (store, outbox, consultations, directory): Backends = if url.starts_with("sqlite:") {
        let store = Arc::new(SqliteStore::connect(url).await?);
        let pool = store.pool().clone();
        if config.sample_data {
            seed_sqlite(&pool).await?;
        }
        (
            store.clone(),
            store,
            Arc::new(SqlConsultationSource::new(pool.clone(), appointments)?),
            Arc::new(SqlRecipientDirectory::new(pool, RecipientTable::default())?),
        )
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let store = Arc::new(PgStore::connect(url).await?);
        let pool = store.pool().clone();
        if config.sample_data {
            seed_postgres(&pool).await?;
        }
        performance.calculation_writes_in_flight = PgStore::WRITES_IN_FLIGHT;
        (
            store.clone(),
            store,
            Arc::new(SqlConsultationSource::new(pool.clone(), appointments)?),
            Arc::new(SqlRecipientDirectory::new(pool, RecipientTable::default())?),
        )
    } else {
        return Err(Error::InvalidInput(
            "DATABASE_URL must start with sqlite: or postgres:".into(),
        ));
    };

    let mut builder = PayoutService::builder()
        .store(store)
        .consultations(consultations)
        .directory(directory)
        .policy(config.policy())
        .performance(performance);
    let mut simulated = Vec::new();
    for setup in providers {
        if setup.adapter.capabilities().simulated {
            simulated.push(setup.adapter.provider());
        }
        builder = setup.register(builder);
    }
    let service = Arc::new(builder.build()?);
    if config.sample_data {
        let period = Period::previous_month(service.now());
        let report = service
            .calculate_period(&Actor::system("demo-seed"), Some(period), &CalculationPolicy::default())
            .await?;
        tracing::info!(period = %period, created = report.created.len(), skipped = report.skipped.len(), "calculated last month");
    }
    let server_config = ServerConfig {
        trusted_proxies: config.trusted_proxies.clone(),
        bank_files,
        platform_name: config.platform_name.clone(),
        ..ServerConfig::new(&config.jwt_secret)
    };
    let state = AppState::new(service.clone(), server_config).with_events(outbox.clone());
    if dev_login.is_some() {
        tracing::warn!(
            "development login offered on the dashboard (public development secret, loopback only, simulated providers)"
        );
    }
    Ok(Demo {
        service,
        state,
        simulated,
        dev_login,
        outbox,
    })
}

/// The store (twice: as the service's store and as the event outbox), the consultations and the
/// directory the demo builds over one database.
type Backends = (
    Arc<dyn payout_core::PayoutStore>,
    Arc<dyn EventOutbox>,
    Arc<dyn payout_core::source::ConsultationSource>,
    Arc<dyn payout_core::source::RecipientDirectory>,
);

/// One provider's adapter, and its balance source when the adapter offers one (Stripe, M-Pesa):
/// the same `Arc`, built once, so the M-Pesa balance its result callback brings is the one read.
#[derive(Clone)]
pub struct ProviderSetup {
    /// The adapter that sends.
    pub adapter: Arc<dyn PayoutProvider>,
    /// Where its balance is read for the funds check (`None`: unknown, which never blocks).
    pub balance: Option<Arc<dyn BalanceSource>>,
}

impl ProviderSetup {
    /// An adapter without a balance source.
    pub fn new(adapter: Arc<dyn PayoutProvider>) -> Self {
        ProviderSetup { adapter, balance: None }
    }

    /// Registers the adapter, and its balance source if it has one, with `builder`.
    pub fn register(self, builder: PayoutServiceBuilder) -> PayoutServiceBuilder {
        let builder = builder.provider(self.adapter);
        match self.balance {
            Some(source) => builder.balance_source(source),
            None => builder,
        }
    }
}

/// Every provider: the real adapter when its credentials are in the environment (with its balance
/// source, for Stripe and M-Pesa), else the simulated one (no balance source).
pub fn providers_from_env(simulation_token: &str) -> Vec<ProviderSetup> {
    let mut out = Vec::new();
    for provider in Provider::ALL {
        match crate::demo_providers::from_env(provider) {
            Ok(setup) => {
                tracing::info!(%provider, balance = setup.balance.is_some(), "provider configured from the environment");
                out.push(setup);
            }
            Err(why) => {
                tracing::warn!(%provider, reason = %why, "using the SIMULATED provider: no money moves");
                let sim = SimulatedProvider::new(provider)
                    .with_settlement(SimulatedSettlement::Deferred)
                    .with_webhook_token(simulation_token);
                out.push(ProviderSetup::new(Arc::new(sim)));
            }
        }
    }
    out
}

/// The demo's application: the library's routers at the root (the original system's paths), and what
/// an application adds around them, which a library router must not: JSON answers for unknown paths
/// (404) and methods (405), `/healthz`, and request ids, a span per request and the request latency
/// histogram ([`observe::layers`]). Its metrics are served on an address of their own
/// ([`serve_metrics`]), never here. A host embedding `payouts` assembles its own
/// (`examples/embed_axum.rs`).
pub fn app(state: AppState) -> Router {
    app_with_dev_login(state, None)
}

/// [`app`], with the development login ([`dev_login`]) when `dev_login` is given: its routes, and
/// a link to it on the dashboard's sign-in page. [`serve_until`] runs this with the demo's
/// [`Demo::dev_login`].
pub fn app_with_dev_login(state: AppState, dev_login: Option<DevLogin>) -> Router {
    let mut dashboard = DashboardConfig::default();
    if dev_login.is_some() {
        let href = dev_login::path(&dashboard);
        dashboard = dashboard.with_sign_in_link(dev_login::LINK_LABEL, &href);
    }
    let mut own = Router::new()
        .route("/healthz", get(api::healthz))
        .with_state(state.clone());
    if let Some(dev) = dev_login {
        own = own.merge(dev_login::routes(dev, &dashboard));
    }
    let app = own
        .merge(api_router(state.clone()))
        .merge(webhook_router(state.clone()))
        .merge(dashboard_router(state, dashboard))
        // After every route is in: it applies to the routes present when it is called.
        .method_not_allowed_fallback(api::method_not_allowed)
        .fallback(api::not_found);
    observe::layers(app)
}

/// Serves until SIGTERM or Ctrl-C ([`shutdown_signal`]), then shuts down gracefully
/// ([`serve_until`]).
pub async fn serve(config: &DemoConfig, demo: Demo) -> std::io::Result<()> {
    serve_until(config, demo, shutdown_signal()).await
}

/// Completes at the first SIGTERM (what `docker stop`, systemd and Kubernetes send) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Serves the app on `config.addr`, the metrics on `config.metrics_addr` ([`serve_metrics`]) and the
/// background jobs ([`spawn_jobs`]) until `shutdown` completes, then shuts down gracefully:
///
/// 1. the engine starts no new provider send ([`PayoutService::begin_shutdown`]): a bulk trigger
///    under way stops preparing attempts, and the payouts it has not reached stay `APPROVED`,
///    untouched; the listeners stop accepting connections;
/// 2. the background jobs stop between passes;
/// 3. the requests in flight (the provider calls already started, and the recording of their
///    answers) and the jobs' current pass get `config.shutdown_grace` to finish.
///
/// Then it returns `Ok` (the demo exits 0). Whatever still runs after the grace is dropped: every
/// attempt is committed before its provider call, so reconciliation settles it after the restart.
pub async fn serve_until(
    config: &DemoConfig,
    demo: Demo,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    let mut tasks = Vec::new();
    if let Some(addr) = config.metrics_addr {
        tasks.push(serve_metrics(addr, demo.service.clone(), stop.clone()).await?);
    }
    tasks.extend(spawn_jobs(config, demo.service.clone(), stop.clone()));
    tasks.push(spawn_relay(&config.events, demo.outbox.clone(), stop.clone())?);
    tracing::info!(addr = %listener.local_addr()?, "payouts demo server listening");
    let service = demo.service.clone();
    let app = app_with_dev_login(demo.state, demo.dev_login).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
    let mut server = tokio::spawn(async move { server.await });
    tokio::select! {
        ended = &mut server => {
            stop.cancel();
            return ended.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        }
        _ = shutdown => {}
    }
    let grace = config.shutdown_grace;
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new work; waiting for the work under way"
    );
    service.begin_shutdown();
    stop.cancel();
    let deadline = tokio::time::Instant::now() + grace;
    match tokio::time::timeout_at(deadline, &mut server).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the server ended with an error while shutting down"),
        Ok(_) => tracing::info!("requests in flight finished"),
        Err(_) => {
            server.abort();
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "requests still running after the grace are dropped; their attempts are committed, so \
                 reconciliation settles them after the restart"
            );
        }
    }
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            abort.abort();
            tracing::warn!("a background job still running after the grace is dropped");
        }
    }
    tracing::info!("shut down");
    Ok(())
}

/// Installs the Prometheus recorder as the process's `metrics` recorder (once; later calls return
/// the same handle), with histogram buckets for every `*_seconds` metric, and registers the
/// descriptions of the engine's and the server's metrics.
pub fn install_metrics() -> Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = prometheus_builder()
        .install_recorder()
        .map_err(|e| Error::InvalidInput(format!("installing the metrics recorder: {e}")))?;
    payout_core::telemetry::describe();
    crate::observe::describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// The exporter's settings: histogram buckets (seconds) for every `*_seconds` metric.
pub fn prometheus_builder() -> PrometheusBuilder {
    const SECONDS: [f64; 14] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .expect("the buckets are not empty")
}

/// `GET /metrics` on `addr`, in the Prometheus text format, for `service` (its gauges are read
/// from the store on every scrape, [`PayoutService::publish_gauges`]); installs the recorder
/// ([`install_metrics`]). An address of its own, so the figures are only where the operator
/// points Prometheus (bind it to loopback or a private network): the app's listener has no
/// `/metrics`. Serves until `stop` is cancelled.
pub async fn serve_metrics(
    addr: SocketAddr,
    service: Arc<PayoutService>,
    stop: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let handle = install_metrics().map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
    let app = metrics_router(handle.clone(), service);
    let upkeep = stop.clone();
    Ok(tokio::spawn(async move {
        // The exporter's upkeep (it has no task of its own without its HTTP listener).
        let upkeep = async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = upkeep.cancelled() => break,
                    _ = tick.tick() => handle.run_upkeep(),
                }
            }
        };
        let serving = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        let (served, ()) = tokio::join!(serving, upkeep);
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics listener failed");
        }
    }))
}

/// The metrics router: `GET /metrics` renders `handle` after refreshing `service`'s gauges.
pub fn metrics_router(handle: PrometheusHandle, service: Arc<PayoutService>) -> Router {
    let render = move || {
        let (handle, service) = (handle.clone(), service.clone());
        async move {
            if let Err(e) = service.publish_gauges().await {
                tracing::warn!(error = %e, "metrics: the gauges could not be read; serving the last values");
            }
            (
                [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
        }
    };
    Router::new().route("/metrics", get(render))
}

/// Reconciliation every `reconcile_every` seconds (refreshing the engine's gauges after each pass)
/// and the monthly calculation, until `stop` is cancelled: a pass or calculation under way then
/// runs to its end, and the job ends. Returns the jobs, to wait for.
pub fn spawn_jobs(
    config: &DemoConfig,
    service: Arc<PayoutService>,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut jobs = Vec::new();
    if config.reconcile_every > 0 {
        let every = config.reconcile_every;
        let s = service.clone();
        let stop = stop.clone();
        jobs.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match s.reconcile(ChronoDuration::seconds(every as i64)).await {
                    Ok(r) if r.examined > 0 => tracing::info!(
                        examined = r.examined,
                        settled = r.settled.len(),
                        resent = r.resent.len(),
                        attention = r.needs_attention.len(),
                        "reconciliation pass"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "reconciliation failed; retrying next pass"),
                }
                if let Err(e) = s.publish_gauges().await {
                    tracing::debug!(error = %e, "the gauges could not be read");
                }
            }
        }));
    }
    jobs.push(tokio::spawn(async move {
        loop {
            let now = Utc::now();
            let next = next_month_start(now);
            let wait = (next - now).to_std().unwrap_or(Duration::from_secs(60));
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            let period = Period::previous_month(Utc::now());
            match service
                .calculate_period(
                    &Actor::system("monthly-schedule"),
                    Some(period),
                    &CalculationPolicy::default(),
                )
                .await
            {
                Ok(r) => tracing::info!(%period, created = r.created.len(), "monthly calculation"),
                Err(e) => tracing::error!(%period, error = %e, "monthly calculation failed"),
            }
        }
    }));
    jobs
}

/// The event relay: every `events.poll`, the outbox's due events go to the doctors' notifications
/// (logged, [`LogNotifier`]) and, when configured, the host's webhook and NATS JetStream, until `stop` is cancelled
/// (a pass under way finishes). Another instance may run its own against the same database: each
/// event is claimed by one.
pub fn spawn_relay(
    events: &DemoEvents,
    outbox: Arc<dyn EventOutbox>,
    stop: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut sink = FanOut::new().with(Arc::new(NotifyingSink::new(Arc::new(LogNotifier))));
    if let Some(webhook) = &events.webhook {
        tracing::info!(webhook = ?webhook, "events are sent to the host's webhook");
        sink = sink.with(Arc::new(
            WebhookSink::new(webhook.clone()).map_err(std::io::Error::other)?,
        ));
    }
    #[cfg(feature = "nats")]
    let nats = events.nats.clone();
    let relay_config = events.relay.clone();
    let poll = events.poll;
    Ok(tokio::spawn(async move {
        #[cfg(feature = "nats")]
        if let Some(nats) = nats {
            tracing::info!(nats = ?nats, "events are published to NATS JetStream");
            // Connecting returns at once (the client keeps trying); only a bad setting fails here.
            match crate::events::nats::NatsSink::connect(nats).await {
                Ok(nats) => sink = sink.with(Arc::new(nats)),
                Err(e) => {
                    tracing::error!(error = %e, "the events NATS client could not be made: no event is relayed");
                    return;
                }
            }
        }
        let relay = EventRelay::new(
            outbox,
            Arc::new(sink),
            Arc::new(payout_core::clock::SystemClock),
            relay_config,
        );
        relay.run(poll, stop.cancelled_owned()).await;
    }))
}

/// 00:00 UTC on the 1st of the month after `now` (the `0 0 1 * *` schedule).
pub fn next_month_start(now: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let day = NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MAX);
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
}

const SAMPLE_DOCTORS: &[(&str, &str, &str, &str)] = &[
    ("dr-wanjiru", "Dr. Wanjiru Kamau", "mpesa", "254712345678"),
    ("dr-otieno", "Dr. Otieno Ouma", "stripe", "acct_1Nv0FGQ9RKHgCVdK"),
    ("dr-amina", "Dr. Amina Hassan", "paypal", "amina@paypal.example"),
    ("dr-kipchoge", "Dr. Kipchoge Ruto", "bank", "1100223344"),
    ("dr-njeri", "Dr. Njeri Mwangi", "mpesa", "254798765432"),
];

/// A `doctor_profiles` row.
type DoctorRow = [Option<String>; 7];
/// An `appointments` row: id, doctor, status, completed at.
type AppointmentRow = (String, String, String, chrono::DateTime<Utc>);

fn sample_rows() -> (Vec<DoctorRow>, Vec<AppointmentRow>) {
    let mut doctors = Vec::new();
    for (id, name, kind, detail) in SAMPLE_DOCTORS {
        let v = |k: &str| (k == *kind).then(|| detail.to_string());
        let bank = (*kind == "bank").then(|| {
            format!(r#"{{"accountName":"{name}","accountNumber":"{detail}","bankName":"KCB","bankCode":"01"}}"#)
        });
        doctors.push([
            Some(id.to_string()),
            Some(name.to_string()),
            Some(format!("{id}@clinic.example")),
            v("stripe"),
            v("paypal"),
            v("mpesa"),
            bank,
        ]);
    }
    let last = Period::previous_month(Utc::now());
    let mut appointments = Vec::new();
    for (i, (id, ..)) in SAMPLE_DOCTORS.iter().enumerate() {
        for n in 0..(4 + 3 * i) {
            let at = last.starts_at() + ChronoDuration::hours(8 + 22 * n as i64);
            let status = if n % 5 == 4 { "CANCELLED" } else { "COMPLETED" };
            appointments.push((format!("apt-{id}-{n:02}"), id.to_string(), status.to_string(), at));
        }
    }
    (doctors, appointments)
}

/// A failure writing the sample host data.
fn seeding(e: impl std::fmt::Display) -> Error {
    Error::Source(format!("seeding sample data: {e}"))
}

/// SQLite keeps `completed_at` as RFC 3339 text.
async fn seed_sqlite(pool: &sqlx::SqlitePool) -> Result<()> {
    let as_text = |at: chrono::DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    seed(pool, "TEXT", None, as_text).await
}

/// Postgres keeps `completed_at` as `TIMESTAMPTZ`, and one seeder at a time locks the table when several
/// instances start together.
async fn seed_postgres(pool: &sqlx::PgPool) -> Result<()> {
    seed(
        pool,
        "TIMESTAMPTZ",
        Some("LOCK TABLE doctor_profiles IN EXCLUSIVE MODE"),
        |at| at,
    )
    .await
}

/// Creates the host tables if missing and, when `doctor_profiles` is empty, fills both with
/// [`sample_rows`] in one transaction. The dialects differ only in `completed_at`'s column type and how
/// it is bound (`timestamp`), and in a `lock` statement run first in the transaction.
async fn seed<DB, T>(
    pool: &sqlx::Pool<DB>,
    timestamp_type: &str,
    lock: Option<&str>,
    timestamp: impl Fn(chrono::DateTime<Utc>) -> T,
) -> Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> T: sqlx::Encode<'q, DB> + sqlx::Type<DB> + Send,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
{
    let e = seeding;
    let tables = [
        "CREATE TABLE IF NOT EXISTS doctor_profiles (doctor_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, \
         stripe_account_id TEXT, paypal_payout_email TEXT, mpesa_phone_number TEXT, bank_details TEXT)"
            .to_string(),
        format!(
            "CREATE TABLE IF NOT EXISTS appointments (id TEXT PRIMARY KEY, doctor_id TEXT NOT NULL, status TEXT NOT NULL, \
             completed_at {timestamp_type})"
        ),
    ];
    for table in &tables {
        sqlx::query(table).execute(pool).await.map_err(e)?;
    }
    let mut tx = pool.begin().await.map_err(e)?;
    if let Some(lock) = lock {
        sqlx::query(lock).execute(&mut *tx).await.map_err(e)?;
    }
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM doctor_profiles")
        .fetch_one(&mut *tx)
        .await
        .map_err(e)?;
    if n > 0 {
        return Ok(());
    }
    let (doctors, appointments) = sample_rows();
    for d in doctors {
        let mut q = sqlx::query("INSERT INTO doctor_profiles VALUES ($1, $2, $3, $4, $5, $6, $7)");
        for v in d {
            q = q.bind(v);
        }
        q.execute(&mut *tx).await.map_err(e)?;
    }
    for (id, doctor, status, at) in appointments {
        sqlx::query("INSERT INTO appointments VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(doctor)
            .bind(status)
            .bind(timestamp(at))
            .execute(&mut *tx)
            .await
            .map_err(e)?;
    }
    tx.commit().await.map_err(e)?;
    tracing::info!("seeded sample doctors and consultations");
    Ok(())
}

/// Reconciliation's back-off starts at the pass interval, so a payout still pending is looked at
/// again a pass or two later (then less and less often), not only after the default 5 minutes; the
/// lease is `reconcile_lease` when set.
fn reconcile_policy(config: &DemoConfig) -> ReconcilePolicy {
    let every = ChronoDuration::seconds(i64::try_from(config.reconcile_every).unwrap_or(i64::MAX).max(1));
    let default = ReconcilePolicy::default();
    let lease = config
        .reconcile_lease
        .and_then(|l| ChronoDuration::from_std(l).ok())
        .unwrap_or(default.lease);
    ReconcilePolicy {
        recheck_after: every.min(default.recheck_after),
        lease,
        ..default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_the_first_of_next_month_at_midnight_utc() {
        let now = Utc.with_ymd_and_hms(2025, 12, 15, 13, 0, 0).unwrap();
        assert_eq!(
            next_month_start(now),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
        );
        let now = Utc.with_ymd_and_hms(2025, 1, 31, 23, 59, 59).unwrap();
        assert_eq!(
            next_month_start(now),
            Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap()
        );
    }

    /// A demo on a SQLite `file`, listening on `addr`, with `jwt_secret`.
    fn config(file: &std::path::Path, addr: &str, jwt_secret: &str) -> DemoConfig {
        DemoConfig {
            addr: addr.parse().unwrap(),
            database_url: format!("sqlite://{}?mode=rwc", file.display()),
            jwt_secret: jwt_secret.into(),
            simulation_token: "token".into(),
            sample_data: true,
            reconcile_every: 0,
            reconcile_lease: None,
            four_eyes: true,
            approver_may_not_trigger: false,
            second_approval_above: Vec::new(),
            reversals: None,
            trusted_proxies: Default::default(),
            metrics_addr: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            events: DemoEvents::default(),
            platform_name: crate::DEFAULT_PLATFORM_NAME.into(),
        }
    }

    #[tokio::test]
    async fn a_bad_reversal_column_is_refused_before_the_database_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("demo.db");
        let config = DemoConfig {
            reversals: Some(Reversals {
                statuses: vec!["REFUNDED".into()],
                reversed_at: "refunded_at; DROP TABLE payouts".into(),
            }),
            ..config(&file, "127.0.0.1:0", "secret")
        };
        match build(&config).await {
            Err(Error::InvalidInput(m)) => assert!(m.contains("not a plain SQL identifier"), "{m}"),
            Err(other) => panic!("expected InvalidInput, got {other}"),
            Ok(_) => panic!("a bad reversal column was accepted"),
        }
        assert!(!file.exists(), "nothing was created, migrated or seeded");
    }

    /// `PAYOUTS_RECONCILE_LEASE_SECS` (`reconcile_lease`) sets reconciliation's claim lease; unset, it is
    /// the engine's default.
    #[test]
    fn the_reconciliation_lease_is_the_setting_or_the_engines_default() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&dir.path().join("demo.db"), "127.0.0.1:0", "secret");
        assert_eq!(config.policy().reconcile.lease, ReconcilePolicy::default().lease);
        config.reconcile_lease = Some(Duration::from_secs(15));
        assert_eq!(config.policy().reconcile.lease, ChronoDuration::seconds(15));
    }

    /// Issue 16 item 3: the public development secret only where nobody else can use it.
    #[test]
    fn the_development_secret_is_refused_beyond_loopback_or_with_a_real_provider() {
        let local: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let local6: SocketAddr = "[::1]:3000".parse().unwrap();
        let everyone: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        let lan: SocketAddr = "192.168.1.20:3000".parse().unwrap();
        assert!(check_development_secret(DEV_SECRET, local, &[]).is_ok());
        assert!(check_development_secret(DEV_SECRET, local6, &[]).is_ok());
        for addr in [everyone, lan] {
            match check_development_secret(DEV_SECRET, addr, &[]) {
                Err(Error::InvalidInput(m)) => assert!(m.contains("NEXTAUTH_SECRET") && m.contains("loopback"), "{m}"),
                other => panic!("{addr}: {other:?}"),
            }
        }
        match check_development_secret(DEV_SECRET, local, &[Provider::StripeConnect]) {
            Err(Error::InvalidInput(m)) => assert!(m.contains("real provider"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A secret of the host's own: anywhere, with any provider.
        assert!(check_development_secret("a-real-secret", everyone, &[Provider::BankTransfer]).is_ok());
    }

    /// Issue 17: the development login comes with the development secret (on loopback, every
    /// provider simulated), and only with it.
    #[tokio::test]
    async fn the_development_login_comes_only_with_the_development_secret() {
        let dir = tempfile::tempdir().unwrap();
        let with_dev = build(&config(&dir.path().join("a.db"), "127.0.0.1:0", DEV_SECRET))
            .await
            .unwrap();
        assert!(with_dev.dev_login.is_some());
        let with_own = build(&config(&dir.path().join("b.db"), "127.0.0.1:0", "a-real-secret"))
            .await
            .unwrap();
        assert!(with_own.dev_login.is_none());
    }

    #[tokio::test]
    async fn the_demo_refuses_the_development_secret_beyond_loopback_before_touching_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("demo.db");
        let config = config(&file, "0.0.0.0:0", DEV_SECRET);
        assert!(matches!(build(&config).await, Err(Error::InvalidInput(_))));
        assert!(!file.exists(), "nothing was created, migrated or seeded");
    }
}
