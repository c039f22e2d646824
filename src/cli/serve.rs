//! Options of `candor serve`, grouped as the library's settings are, and
//! starting the server with them.

use anyhow::Context;
use clap::Args;

use super::DatabaseArgs;
use crate::model::Precision;
use crate::serve::models::{CascadeSpec, ModelSpec};

/// Options of `candor serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model to serve, as DIR (named after the directory) or NAME=DIR;
    /// repeat it (or separate with commas in CANDOR_MODEL) to serve several,
    /// each with its own engine thread and queue. The first is the default:
    /// requests without a "model" field, `/v1/model`, `/predict` and `POST /`.
    /// All share the compute threads (--threads).
    #[arg(
        long,
        env = "CANDOR_MODEL",
        default_value = "models/sentiment",
        value_delimiter = ','
    )]
    pub model: Vec<ModelSpec>,
    /// A cascade, served under its own name: NAME=FIRST,NEXT[,…] of served
    /// models' names. /v1/classify with "model": NAME answers with the first
    /// model when its calibrated top probability reaches the threshold
    /// fitted by `candor calibrate --cascade-to`, and passes the text on
    /// otherwise. Repeatable; separate several with ';' in CANDOR_CASCADE.
    #[arg(long, env = "CANDOR_CASCADE", value_delimiter = ';')]
    pub cascade: Vec<CascadeSpec>,
    /// Address to listen on.
    #[arg(long, env = "CANDOR_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Most rows (inputs, or inputs × samples) in one forward pass.
    #[arg(long, env = "CANDOR_MAX_BATCH_SIZE", default_value_t = 32)]
    pub max_batch_size: usize,
    /// Most padded tokens (rows × longest row) in one forward pass.
    #[arg(long, env = "CANDOR_MAX_BATCH_TOKENS", default_value_t = 4096)]
    pub max_batch_tokens: usize,
    /// Longest wait, in milliseconds, for more requests to join a batch. 0
    /// (the default) never waits: a request that finds the engine idle runs
    /// at once, and batches form from what queued while the engine was busy.
    #[arg(long, env = "CANDOR_MAX_BATCH_WAIT_MS", default_value_t = 0)]
    pub max_batch_wait_ms: u64,
    /// Requests that may wait for the model; beyond that the answer is 429 with Retry-After.
    #[arg(long, env = "CANDOR_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,
    /// Most inputs in one request (more is 413).
    #[arg(long, env = "CANDOR_MAX_INPUTS", default_value_t = 64)]
    pub max_inputs: usize,
    /// Largest request body in bytes (more is 413).
    #[arg(long, env = "CANDOR_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Most characters of one input the server reads (0: 20 × the model's
    /// maximum length in tokens); longer inputs are cut before tokenizing, or
    /// refused when the request says "truncate": false.
    #[arg(long, env = "CANDOR_MAX_INPUT_CHARS", default_value_t = 0)]
    pub max_input_chars: usize,
    /// Most token passes one request may cost: tokens × samples for full MC
    /// dropout, tokens for a plain or head-mode request. 0 derives it at
    /// start-up from a timed pass, as what the engine finishes in half the
    /// request timeout. More is 413.
    #[arg(long, env = "CANDOR_MAX_REQUEST_COST", default_value_t = 0)]
    pub max_request_cost: usize,
    /// Requests not answered within this many milliseconds get 503.
    #[arg(long, env = "CANDOR_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// MC-dropout samples when a request names none.
    #[arg(long, env = "CANDOR_DEFAULT_SAMPLES", default_value_t = 30)]
    pub default_samples: usize,
    /// Most MC-dropout samples a request may ask for.
    #[arg(long, env = "CANDOR_MAX_SAMPLES", default_value_t = 100)]
    pub max_samples: usize,
    /// When set, /v1/*, /predict and POST / need 'Authorization: Bearer <key>'.
    #[arg(long, env = "CANDOR_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Serve without an API key on a non-loopback address (e.g. 0.0.0.0);
    /// without this flag candor refuses to, since the review queue returns
    /// stored texts. An empty CANDOR_API_KEY counts as no key.
    #[arg(long, env = "CANDOR_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Threads answering HTTP (the model has its own thread).
    #[arg(long, env = "CANDOR_HTTP_WORKERS", default_value_t = 2)]
    pub http_workers: usize,
    /// A request head (request line and headers) must arrive within this many
    /// milliseconds of its first byte (of the accept, on a new connection), or
    /// the connection is closed. A real client sends its head in one packet.
    #[arg(long, env = "CANDOR_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// A request body must arrive within this many milliseconds of its
    /// handler starting to read it, or the answer is 408 and the connection
    /// closes (1 MiB over a 1 Mbit/s link takes about 8 s).
    #[arg(long, env = "CANDOR_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_timeout_ms: u64,
    /// A keep-alive connection with no request for this many milliseconds is
    /// closed; longer than the 60 s idle timeout common in load balancers, so
    /// they, not candor, close the pooled connections they hold.
    #[arg(long, env = "CANDOR_IDLE_TIMEOUT_MS", default_value_t = 75_000)]
    pub idle_timeout_ms: u64,
    /// Most connections open at once; further ones are closed as soon as
    /// they are accepted (and counted in candor_connections_refused_total).
    #[arg(long, env = "CANDOR_MAX_CONNECTIONS", default_value_t = 1_024)]
    pub max_connections: usize,
    /// After SIGTERM, how many milliseconds requests in flight may take before
    /// their connections are closed regardless (the request timeout plus 5 s
    /// for a body still arriving). Shutdown takes at most this plus
    /// --log-drain-timeout-ms.
    #[arg(long, env = "CANDOR_SHUTDOWN_GRACE_MS", default_value_t = 15_000)]
    pub shutdown_grace_ms: u64,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Keep no database: no prediction log, feedback, review queue or stats.
    #[arg(long, env = "CANDOR_NO_DATABASE")]
    pub no_database: bool,
    /// Keep the input texts of logged predictions; false keeps only their sha256 (for privacy).
    #[arg(long, env = "CANDOR_STORE_TEXT", default_value_t = true, action = clap::ArgAction::Set)]
    pub store_text: bool,
    /// Longest input text kept in the prediction log, in characters; longer
    /// ones are cut (at a character boundary) and marked `text_truncated`.
    #[arg(long, env = "CANDOR_MAX_STORED_TEXT_CHARS", default_value_t = 10_000)]
    pub max_stored_text_chars: usize,
    /// Requests' worth of predictions that may wait for the database (the
    /// backlog while it is slow or away); beyond it predictions are answered
    /// but not logged, and counted.
    #[arg(long, env = "CANDOR_LOG_BACKLOG", default_value_t = 100_000)]
    pub log_backlog: usize,
    /// Most bytes (approximate, texts included) the log's backlog may hold;
    /// beyond it predictions are answered but not logged, and counted.
    #[arg(long, env = "CANDOR_LOG_BACKLOG_BYTES", default_value_t = 64 << 20)]
    pub log_backlog_bytes: usize,
    /// Most predictions written per database transaction.
    #[arg(long, env = "CANDOR_LOG_BATCH_ROWS", default_value_t = 256)]
    pub log_batch_rows: usize,
    /// How long shutdown waits, in milliseconds, for the backlog to reach the
    /// database, beyond the shutdown grace (the log keeps writing during it).
    #[arg(long, env = "CANDOR_LOG_DRAIN_TIMEOUT_MS", default_value_t = 8_000)]
    pub log_drain_timeout_ms: u64,
    /// How long start-up waits, in seconds, for the database to accept connections.
    #[arg(long, env = "CANDOR_DATABASE_WAIT_S", default_value_t = 30)]
    pub database_wait_s: u64,
}

impl ServeArgs {
    /// The library's view of these options, the model computing at `precision`.
    pub fn settings(&self, precision: Precision) -> crate::serve::ServeSettings {
        use crate::serve::{
            engine::BatchSettings, listen::ConnectionSettings, Limits, Persistence, SamplingLimits,
            ServeSettings,
        };
        use crate::store::log::LogSettings;
        use std::time::Duration;
        ServeSettings {
            limits: Limits {
                max_inputs: self.max_inputs,
                max_body_bytes: self.max_body_bytes,
                max_input_chars: self.max_input_chars,
                max_request_cost: self.max_request_cost,
                request_timeout: Duration::from_millis(self.request_timeout_ms),
            },
            batch: BatchSettings {
                max_batch_size: self.max_batch_size.max(1),
                max_batch_tokens: self.max_batch_tokens.max(1),
                max_batch_wait: Duration::from_millis(self.max_batch_wait_ms),
                queue_capacity: self.queue_capacity.max(1),
            },
            sampling: SamplingLimits {
                default_samples: self.default_samples,
                max_samples: self.max_samples,
            },
            connections: ConnectionSettings {
                header_timeout: Duration::from_millis(self.header_timeout_ms),
                body_timeout: Duration::from_millis(self.body_timeout_ms),
                idle_timeout: Duration::from_millis(self.idle_timeout_ms),
                max_connections: self.max_connections.max(1),
                shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            },
            api_key: self.api_key.clone().filter(|k| !k.is_empty()),
            insecure_no_auth: self.insecure_no_auth,
            precision,
            cascades: self.cascade.clone(),
            persistence: (!self.no_database).then(|| Persistence {
                database_url: self.database.database_url.clone(),
                store_text: self.store_text,
                max_stored_text_chars: self.max_stored_text_chars,
                log: LogSettings {
                    capacity: self.log_backlog.max(1),
                    max_backlog_bytes: self.log_backlog_bytes,
                    batch_rows: self.log_batch_rows.max(1),
                    drain_timeout: Duration::from_millis(self.log_drain_timeout_ms),
                },
                connect_patience: Duration::from_secs(self.database_wait_s),
            }),
        }
    }
}

/// Starts the runtime, binds the address and serves until SIGTERM or Ctrl-C.
pub(super) fn run_serve(args: &ServeArgs, precision: Precision) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.http_workers.max(1))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        crate::serve::run(
            listener,
            args.model.clone(),
            args.settings(precision),
            crate::serve::shutdown_signal(),
        )
        .await
    })
}
