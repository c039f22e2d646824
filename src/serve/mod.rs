//! The HTTP service: axum routes over the inference engine.
//!
//! - [`engine`]: the model's own thread, a bounded queue and the batcher.
//! - [`inference`]: validation, tokenization off the runtime, queueing, deadlines.
//! - [`classify`], [`compat`], [`feedback`], [`ops`]: handlers by area;
//!   [`record`] turns answered predictions into prediction-log records.
//! - [`api`]: request and response bodies (the contract); [`error`]: the one
//!   error type and its mapping to HTTP; [`extract`]: JSON bodies with that
//!   error format; [`metrics`]: Prometheus.
//!
//! [`run`] takes its listener and shutdown future as arguments, so tests bind
//! port 0 and stop the server when they like.

pub mod api;
pub mod classify;
pub mod compat;
pub mod decide;
pub mod engine;
pub mod error;
pub mod extract;
pub mod feedback;
pub mod inference;
pub mod metrics;
pub mod ops;
pub mod record;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::model::Classifier;
use crate::store::log::{LogSettings, LogWriter, PredictionLog};
use crate::store::{redact, ModelRecord, Store};
use crate::uncertainty::calibration::Calibration;
use api::CalibrationInfo;
use api::ModelInfo;
use engine::{BatchSettings, Engine};
use error::ApiError;
use extract::BodyLimit;
use metrics::Metrics;
use record::RequestContext;

/// Per-request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most inputs in one request (more is 413).
    pub max_inputs: usize,
    /// Largest request body in bytes (more is 413).
    pub max_body_bytes: usize,
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
    /// When set, `/v1/*`, `/predict` and `POST /` need `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// The prediction log and feedback database; `None` keeps nothing.
    pub persistence: Option<Persistence>,
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
    /// The model (also owned by the engine thread).
    pub classifier: Arc<Classifier>,
    /// The queue to the inference thread.
    pub engine: Engine,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The settings in force.
    pub settings: ServeSettings,
    /// What `GET /v1/model` answers.
    pub info: ModelInfo,
    /// The database, unless persistence is off.
    pub store: Option<Store>,
    /// The prediction log, unless persistence is off.
    pub log: Option<PredictionLog>,
    /// Whether logged predictions keep their text.
    pub store_text: bool,
    /// Longest text a logged prediction keeps, in characters.
    pub max_stored_text_chars: usize,
    /// The model's calibration.json, when it has one.
    pub calibration: Option<Calibration>,
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
        ops::healthz,
        ops::readyz,
        ops::metrics
    ),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

/// The OpenAPI description of the service.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Loads the model, starts the engine and serves until `shutdown` resolves;
/// then stops accepting, finishes what is in flight and stops the engine.
pub async fn run(
    listener: TcpListener,
    model_dir: &Path,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let dir = model_dir.to_path_buf();
    let classifier = tokio::task::spawn_blocking(move || Classifier::load(&dir))
        .await?
        .with_context(|| format!("loading model {}", model_dir.display()))?;
    let classifier = Arc::new(classifier);
    let calibration = Calibration::load(model_dir)?;
    let metrics = Arc::new(Metrics::new()?);
    let (engine, worker) = Engine::start(classifier.clone(), settings.batch, metrics.clone())?;
    let info = model_info(model_dir, &classifier, calibration.as_ref());
    let (store, log, writer) = match &settings.persistence {
        Some(p) => {
            let (store, log, writer) = open_store(p, &info, &metrics).await?;
            (Some(store), Some(log), Some(writer))
        }
        None => (None, None, None),
    };
    tracing::info!(model = %info.name, addr = %listener.local_addr()?, "serving");
    let store_text = settings.persistence.as_ref().is_none_or(|p| p.store_text);
    let max_stored_text_chars = settings
        .persistence
        .as_ref()
        .map_or(usize::MAX, |p| p.max_stored_text_chars);
    let state = Arc::new(AppState {
        classifier,
        engine,
        metrics,
        settings,
        info,
        store: store.clone(),
        log,
        store_text,
        max_stored_text_chars,
        calibration,
    });
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    // The router (and with it every queue sender) is gone: the engine and
    // the prediction log drain and stop.
    tokio::task::spawn_blocking(move || worker.join())
        .await?
        .ok();
    if let Some(writer) = writer {
        writer.finish().await;
    }
    if let Some(store) = store {
        store.close().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Connects, migrates, registers the model and starts the prediction log.
async fn open_store(
    persistence: &Persistence,
    info: &ModelInfo,
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
    let model_id = store
        .register_model(&ModelRecord {
            name: info.name.clone(),
            weights_sha256: info.weights_sha256.clone(),
            labels: info.labels.clone(),
            metrics: info.training_metrics.clone(),
        })
        .await
        .context("registering the model")?;
    tracing::info!(database = %redact(url), store_text = persistence.store_text, "logging predictions");
    let (log, writer) = PredictionLog::start(
        store.clone(),
        model_id,
        persistence.log,
        metrics.log_counters(),
    );
    Ok((store, log, writer))
}

/// The full router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.settings.limits.max_body_bytes;
    let protected = Router::new()
        .route("/v1/classify", post(classify::classify))
        .route("/v1/classify/uncertainty", post(classify::uncertainty))
        .route("/v1/model", get(ops::model))
        .route("/v1/feedback", post(feedback::feedback))
        .route("/v1/review-queue", get(feedback::review_queue))
        .route("/v1/stats", get(feedback::stats))
        .route("/predict", post(compat::predict))
        .route("/", post(compat::inference_api))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    let open = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));
    Router::new()
        .merge(protected)
        .merge(open)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(BodyLimit(limit)))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_string())
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

/// Rejects calls without the configured bearer key, comparing in constant time.
async fn require_api_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.settings.api_key else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// Request id, one span per request, and the request metrics.
async fn observe(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    request.extensions_mut().insert(RequestContext {
        id: request_id.clone(),
        started,
    });
    // Handlers record into this span (the current one while they run), so the
    // "answered" line carries the sizes and the tokenize/queue/inference times.
    let empty = tracing::field::Empty;
    let span = tracing::info_span!(
        "request",
        id = %request_id,
        %method,
        %route,
        inputs = empty,
        samples = empty,
        seed = empty,
        tokenize_ms = empty,
        queue_ms = empty,
        inference_ms = empty
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16().to_string();
    let elapsed = started.elapsed();
    state
        .metrics
        .requests
        .with_label_values(&[&route, &method, &status])
        .inc();
    state
        .metrics
        .latency
        .with_label_values(&[&route])
        .observe(elapsed.as_secs_f64());
    span.in_scope(
        || tracing::info!(status = %status, ms = elapsed.as_secs_f64() * 1e3, "answered"),
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

fn model_info(dir: &Path, classifier: &Classifier, calibration: Option<&Calibration>) -> ModelInfo {
    let c = &classifier.config;
    let name = std::fs::canonicalize(dir)
        .unwrap_or_else(|_| PathBuf::from(dir))
        .file_name()
        .map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned());
    let training_metrics = std::fs::read_to_string(dir.join("metrics.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    ModelInfo {
        name,
        labels: classifier.labels.clone(),
        layers: c.num_hidden_layers,
        hidden_size: c.hidden_size,
        attention_heads: c.num_attention_heads,
        intermediate_size: c.intermediate_size,
        vocab_size: c.vocab_size,
        max_length: c.candor.max_length,
        dropout: [
            c.hidden_dropout_prob,
            c.attention_probs_dropout_prob,
            c.classifier_dropout_rate(),
        ],
        temperature: c.candor.temperature,
        weights_sha256: classifier.weights_sha256.clone(),
        training_metrics,
        calibration: calibration.map(|c| CalibrationInfo {
            examples: c.examples,
            mc_samples: c.mc_samples,
            modes: [("full", c.full.is_some()), ("head", c.head.is_some())]
                .into_iter()
                .filter(|(_, present)| *present)
                .map(|(mode, _)| mode.to_string())
                .collect(),
            feature_distance: c.feature_distance.is_some(),
            abstention: c.abstention.clone(),
        }),
    }
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
