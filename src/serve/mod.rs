//! The HTTP service: axum routes over the inference engine.
//!
//! - [`models`]: the models served, each with its engine; reload; cascades' checks.
//! - [`engine`]: a model's own thread, a bounded queue and the batcher.
//! - [`inference`]: validation, tokenization off the runtime, queueing, deadlines.
//! - [`classify`], [`cascade`], [`compat`], [`kserve`], [`feedback`], [`ops`]:
//!   handlers by area (KServe's v2 protocol in [`kserve`]);
//!   [`record`] turns answered predictions into prediction-log records.
//! - [`api`]: request and response bodies (the contract), with [`schema`]
//!   for the constraints the derives cannot state; [`error`]: the one
//!   error type and its mapping to HTTP; [`extract`]: JSON bodies with that
//!   error format; [`metrics`]: Prometheus.
//! - [`playground`]: the page at `GET /`.
//! - `middleware`: request ids, spans and metrics; the API key; answers
//!   for unknown routes, wrong methods and panics.
//! - [`listen`]: accepting and running connections, their timeouts and cap,
//!   and the shutdown grace.
//!
//! [`run`] takes its listener and shutdown future as arguments, so tests bind
//! port 0 and stop the server when they like.

pub mod api;
pub mod cascade;
pub mod classify;
pub mod compat;
pub mod decide;
pub mod engine;
pub mod error;
pub mod extract;
pub mod feedback;
pub mod inference;
pub mod kserve;
pub mod listen;
pub mod metrics;
mod middleware;
pub mod models;
pub mod ops;
pub mod playground;
pub mod record;
pub mod schedule;
pub mod schema;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state as middleware_fn;
use axum::routing::{get, post};
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::model::Precision;
use crate::store::log::{LogSettings, LogWriter, PredictionLog};
use crate::store::{redact, Store};
use engine::{BatchSettings, CostSettings};
use extract::BodyRules;
use listen::ConnectionSettings;
use metrics::Metrics;
use models::{Loader, ModelSpec, Registry};

/// Per-request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most inputs in one request (more is 413).
    pub max_inputs: usize,
    /// Largest request body in bytes (more is 413).
    pub max_body_bytes: usize,
    /// Most characters of one input read; 0 is 20 × the model's maximum
    /// length in tokens. Longer inputs are cut (or refused without truncation).
    pub max_input_chars: usize,
    /// Most token passes (tokens × passes each goes through, see
    /// [`engine::Work::cost`]) one request may cost; 0 derives it at start-up
    /// from a timed pass and the request timeout. More is 413.
    pub max_request_cost: usize,
    /// A request not answered within this is 503.
    pub request_timeout: Duration,
}

/// MC-dropout sample counts.
#[derive(Debug, Clone, Copy)]
pub struct SamplingLimits {
    /// Samples when a request names none.
    pub default_samples: usize,
    /// Most samples a request may ask for.
    pub max_samples: usize,
}

/// Everything `serve` needs besides the model.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Request limits.
    pub limits: Limits,
    /// Batching and queueing.
    pub batch: BatchSettings,
    /// MC-dropout sample counts.
    pub sampling: SamplingLimits,
    /// Connection timeouts, the connection cap and the shutdown grace.
    pub connections: ConnectionSettings,
    /// When set, `/v1/*`, `/predict` and `POST /` need `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Serve without an API key on an address other hosts can reach; without
    /// it, [`run`] refuses to (a loopback address is always allowed).
    pub insecure_no_auth: bool,
    /// The prediction log and feedback database; `None` keeps nothing.
    pub persistence: Option<Persistence>,
    /// Arithmetic of the model's dense layers.
    pub precision: Precision,
    /// Cascades over the served models, served under their own names.
    pub cascades: Vec<models::CascadeSpec>,
}

/// Where predictions and feedback are kept.
#[derive(Debug, Clone)]
pub struct Persistence {
    /// `sqlite://FILE` (created if missing) or `postgres://…`.
    pub database_url: String,
    /// Keep the input texts; false keeps only their sha256.
    pub store_text: bool,
    /// Longest text kept, in characters; longer ones are cut and marked `text_truncated`.
    pub max_stored_text_chars: usize,
    /// Queueing and batching of the prediction log.
    pub log: LogSettings,
    /// How long start-up waits for the database to accept connections.
    pub connect_patience: Duration,
}

/// Shared by every handler.
pub struct AppState {
    /// The models served, each with its engine.
    pub models: Registry,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The settings in force.
    pub settings: ServeSettings,
    /// The database, unless persistence is off.
    pub store: Option<Store>,
    /// The prediction log, unless persistence is off.
    pub log: Option<PredictionLog>,
    /// Whether logged predictions keep their text.
    pub store_text: bool,
    /// Longest text a logged prediction keeps, in characters.
    pub max_stored_text_chars: usize,
    /// One per core: requests tokenizing at once.
    pub tokenizer_permits: tokio::sync::Semaphore,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "candor",
        description = "Text classification that knows when it does not know: predictions and Monte-Carlo-dropout uncertainty."
    ),
    paths(
        classify::classify,
        classify::uncertainty,
        compat::predict,
        compat::inference_api,
        feedback::feedback,
        feedback::review_queue,
        feedback::stats,
        ops::model,
        ops::models,
        ops::model_by_name,
        ops::reload,
        playground::page,
        ops::healthz,
        ops::readyz,
        ops::metrics
    ),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

/// The OpenAPI description of the service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    schema::complete(ApiDoc::openapi())
}

/// Characters of an input read per token of the model's maximum length, by
/// default: word pieces average 4–5 characters of English, so this cuts only
/// what truncation would have dropped anyway, bar long runs of spaces.
const CHARS_PER_TOKEN_READ: usize = 20;

/// Loads the model, starts the engine and serves until `shutdown` resolves;
/// then stops accepting, finishes what is in flight within the shutdown
/// grace while the prediction log keeps writing, and stops the engine and
/// the log.
/// The first model is the default; `SIGHUP` reloads every model.
pub async fn run(
    listener: TcpListener,
    models: Vec<ModelSpec>,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    check_access(&settings, listener.local_addr()?)?;
    let server = Server::start(models, settings).await?;
    let names: Vec<String> = server
        .state
        .models
        .all()
        .iter()
        .map(|m| m.name.clone())
        .collect();
    tracing::info!(models = %names.join(","), addr = %listener.local_addr()?, "serving");
    reload_on_hangup(server.state.clone());
    server.serve(listener, ShutdownClock::start(shutdown)).await
}

/// Reloads every model on each `SIGHUP`, for as long as the server runs.
fn reload_on_hangup(state: Arc<AppState>) {
    #[cfg(unix)]
    {
        let weak = Arc::downgrade(&state);
        drop(state);
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                tracing::error!("cannot listen for SIGHUP: reload with POST /v1/admin/reload");
                return;
            };
            while hangups.recv().await.is_some() {
                let Some(state) = weak.upgrade() else { return };
                tracing::info!("SIGHUP: reloading every model");
                if let Err(e) = state.models.reload(None).await {
                    tracing::error!(error = %e, "reload failed");
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(state);
}

/// What [`run`] starts and must stop.
struct Server {
    state: Arc<AppState>,
    store: Option<Store>,
    writer: Option<LogWriter>,
}

impl Server {
    /// Opens the store, loads the models and starts their engines.
    async fn start(models: Vec<ModelSpec>, settings: ServeSettings) -> anyhow::Result<Self> {
        models::check_specs(&models)?;
        let metrics = Arc::new(Metrics::new()?);
        let (store, log, writer) = match &settings.persistence {
            Some(p) => {
                let (store, log, writer) = open_store(p, &metrics).await?;
                (Some(store), Some(log), Some(writer))
            }
            None => (None, None, None),
        };
        let loader = Loader {
            precision: settings.precision,
            batch: settings.batch,
            cost: CostSettings {
                max_request_cost: settings.limits.max_request_cost,
                request_timeout: settings.limits.request_timeout,
            },
            metrics: metrics.clone(),
            store: store.clone(),
            log: log.clone(),
        };
        let registry = Registry::load(models, settings.cascades.clone(), loader).await?;
        let store_text = settings.persistence.as_ref().is_none_or(|p| p.store_text);
        let max_stored_text_chars = settings
            .persistence
            .as_ref()
            .map_or(usize::MAX, |p| p.max_stored_text_chars);
        let mut settings = settings;
        if settings.limits.max_input_chars == 0 {
            let longest = registry.all().iter().map(|m| m.info.max_length).max();
            settings.limits.max_input_chars = CHARS_PER_TOKEN_READ * longest.unwrap_or(512);
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let state = Arc::new(AppState {
            models: registry,
            metrics,
            settings,
            store: store.clone(),
            log,
            store_text,
            max_stored_text_chars,
            tokenizer_permits: tokio::sync::Semaphore::new(cores),
        });
        Ok(Self {
            state,
            store,
            writer,
        })
    }

    /// Serves until the shutdown signal; from then on the HTTP drain and the
    /// prediction log's drain run side by side, then the engine stops and
    /// the store closes.
    async fn serve(self, listener: TcpListener, clock: ShutdownClock) -> anyhow::Result<()> {
        let Server {
            state,
            store,
            writer,
        } = self;
        let workers_of = Arc::downgrade(&state);
        let connections = state.settings.connections;
        let metrics = state.metrics.clone();
        let (requests_done, requests_over) = tokio::sync::oneshot::channel::<()>();
        let http = async {
            let signal = clock.clone().began();
            listen::serve(listener, router(state), connections, metrics, async {
                signal.await;
            })
            .await;
            // Every connection, and with it every handle on the engine
            // queues, is gone: the engines drain and stop.
            let _ = requests_done.send(());
            let workers = workers_of
                .upgrade()
                .map(|state| state.models.take_workers())
                .unwrap_or_default();
            tokio::task::spawn_blocking(move || {
                for worker in workers {
                    let _ = worker.join();
                }
            })
            .await
        };
        let log = async {
            if let Some(writer) = writer {
                let began = clock.clone().began().await;
                let over = async {
                    let _ = requests_over.await;
                };
                let grace_left = connections.shutdown_grace.saturating_sub(began.elapsed());
                writer.finish(over, grace_left).await;
            }
        };
        let (engine_stopped, ()) = tokio::join!(http, log);
        engine_stopped?;
        if let Some(store) = store {
            store.close().await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// When the shutdown signal came, for the HTTP drain and the prediction
/// log's drain, which run side by side from that moment.
#[derive(Clone)]
struct ShutdownClock(tokio::sync::watch::Receiver<Option<tokio::time::Instant>>);

impl ShutdownClock {
    /// Watches `shutdown` on its own task.
    fn start(shutdown: impl Future<Output = ()> + Send + 'static) -> Self {
        let (began, clock) = tokio::sync::watch::channel(None);
        tokio::spawn(async move {
            shutdown.await;
            let _ = began.send(Some(tokio::time::Instant::now()));
        });
        Self(clock)
    }

    /// Resolves at the shutdown signal, with its instant.
    async fn began(mut self) -> tokio::time::Instant {
        match self.0.wait_for(Option::is_some).await {
            Ok(began) => began.unwrap_or_else(tokio::time::Instant::now),
            // The watching task is gone without a signal (the runtime is
            // stopping): count from now.
            Err(_) => tokio::time::Instant::now(),
        }
    }
}

/// Refuses to serve stored texts and the model to the network with no key:
/// without one, only a loopback address, or an explicit `insecure_no_auth`.
fn check_access(settings: &ServeSettings, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    if settings.api_key.is_some() {
        return Ok(());
    }
    if !addr.ip().is_loopback() && !settings.insecure_no_auth {
        anyhow::bail!(
            "refusing to listen on {addr} without an API key: other hosts could read the review \
             queue's stored texts and use the model. Set --api-key (CANDOR_API_KEY), listen on \
             127.0.0.1, or pass --insecure-no-auth (CANDOR_INSECURE_NO_AUTH=true) to serve openly"
        );
    }
    tracing::warn!(%addr, "no API key: every route is open to whoever can reach this address");
    Ok(())
}

/// Connects, migrates and starts the prediction log (whose handles each
/// model binds to its own id as it registers).
async fn open_store(
    persistence: &Persistence,
    metrics: &Metrics,
) -> anyhow::Result<(Store, PredictionLog, LogWriter)> {
    let url = &persistence.database_url;
    let store = Store::connect_patiently(url, persistence.connect_patience)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {}", redact(url)))?;
    tracing::info!(database = %redact(url), store_text = persistence.store_text, "logging predictions");
    let (log, writer) = PredictionLog::start(
        store.clone(),
        UNBOUND_MODEL_ID,
        persistence.log,
        metrics.log_counters(),
    );
    Ok((store, log, writer))
}

/// The id the log's first handle carries: every handle that logs is bound
/// to its model's id first ([`PredictionLog::for_model`]).
const UNBOUND_MODEL_ID: i64 = 0;

/// The full router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.settings.limits.max_body_bytes;
    let body_rules = BodyRules {
        max_bytes: limit,
        timeout: state.settings.connections.body_timeout,
    };
    let protected = Router::new()
        .route("/v1/classify", post(classify::classify))
        .route("/v1/classify/uncertainty", post(classify::uncertainty))
        .route("/v1/model", get(ops::model))
        .route("/v1/models", get(ops::models))
        .route("/v1/models/{name}", get(ops::model_by_name))
        .route("/v1/admin/reload", post(ops::reload))
        .route("/v1/feedback", post(feedback::feedback))
        .route("/v1/review-queue", get(feedback::review_queue))
        .route("/v1/stats", get(feedback::stats))
        .route("/predict", post(compat::predict))
        .route("/v2", get(kserve::server_metadata))
        .route("/v2/models/{name}", get(kserve::model_metadata))
        .route("/v2/models/{name}/ready", get(kserve::model_ready))
        .route("/v2/models/{name}/infer", post(kserve::infer))
        .route("/", post(compat::inference_api).get(playground::page))
        .route_layer(middleware_fn(state.clone(), middleware::require_api_key));
    let open = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v2/health/live", get(kserve::live))
        .route("/v2/health/ready", get(kserve::ready));
    Router::new()
        .merge(protected)
        .merge(open)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi()))
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(body_rules))
        .layer(middleware_fn(state.clone(), middleware::observe))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .with_state(state)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received: finishing requests in flight");
}
