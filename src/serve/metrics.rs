//! Prometheus metrics: requests by route and status, latency, batch sizes,
//! queue depth, MC samples and connections, rendered as the text exposition
//! format.

use crate::store::log::LogCounters;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// What one model's engine updates.
#[derive(Clone)]
pub struct EngineMetrics {
    /// Rows per forward pass.
    pub batch_rows: Histogram,
    /// Jobs waiting.
    pub queue_depth: IntGauge,
    /// MC-dropout rows computed.
    pub mc_samples: IntCounter,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// Requests by route, method and status.
    pub requests: IntCounterVec,
    /// Request latency in seconds by route.
    pub latency: HistogramVec,
    /// Rows per forward pass, by model.
    pub batch_rows: HistogramVec,
    /// Jobs waiting for the engine, by model.
    pub queue_depth: IntGaugeVec,
    /// MC-dropout samples computed (inputs × samples), by model.
    pub mc_samples: IntCounterVec,
    /// Inputs answered, by model and route.
    pub inputs: IntCounterVec,
    /// Inputs a cascade answered, by cascade and the model that answered.
    pub cascade_answers: IntCounterVec,
    /// Connections open now.
    pub connections_open: IntGauge,
    /// Connections closed at once because `max_connections` were open.
    pub connections_refused: IntCounter,
    /// Connections closed by a timeout, by what they were waiting for
    /// (`head`: a request head; `idle`: a next request).
    pub connections_timed_out: IntCounterVec,
    /// The prediction log's instruments.
    log: LogCounters,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("candor".into()), None)?;
        let r = &registry;
        Ok(Self {
            requests: counter_vec(
                r,
                "http_requests_total",
                "HTTP requests by route, method and status",
                &["route", "method", "status"],
            )?,
            latency: histogram_vec(
                r,
                "http_request_duration_seconds",
                "HTTP request latency by route",
                LATENCY_BUCKETS,
                &["route"],
            )?,
            batch_rows: histogram_vec(
                r,
                "batch_rows",
                "Rows (inputs or inputs x samples) per forward pass, by model",
                BATCH_ROWS_BUCKETS,
                &["model"],
            )?,
            queue_depth: gauge_vec(
                r,
                "queue_depth",
                "Jobs waiting for the inference engine, by model",
                &["model"],
            )?,
            mc_samples: counter_vec(
                r,
                "mc_samples_total",
                "MC-dropout forward rows computed (inputs x samples), by model",
                &["model"],
            )?,
            inputs: counter_vec(
                r,
                "inputs_total",
                "Inputs answered, by model and route",
                &["model", "route"],
            )?,
            connections_open: registered(
                r,
                IntGauge::new("connections_open", "HTTP connections open now")?,
            )?,
            connections_refused: counter(
                r,
                "connections_refused_total",
                "HTTP connections closed as soon as accepted because max_connections were open",
            )?,
            connections_timed_out: counter_vec(
                r,
                "connections_timed_out_total",
                "HTTP connections closed by a timeout, by what they were waiting for (head or idle)",
                &["waiting_for"],
            )?,
            cascade_answers: counter_vec(
                r,
                "cascade_answers_total",
                "Inputs a cascade answered, by cascade and by the model that answered",
                &["cascade", "answered_by"],
            )?,
            log: log_counters(r)?,
            // Last: every field above borrows it.
            registry,
        })
    }

    /// The engine's instruments for the model `name`.
    pub fn engine(&self, name: &str) -> EngineMetrics {
        EngineMetrics {
            batch_rows: self.batch_rows.with_label_values(&[name]),
            queue_depth: self.queue_depth.with_label_values(&[name]),
            mc_samples: self.mc_samples.with_label_values(&[name]),
        }
    }

    /// The prediction log's instruments (shared handles).
    pub fn log_counters(&self) -> LogCounters {
        self.log.clone()
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

/// Buckets of the request latency, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the rows per forward pass.
const BATCH_ROWS_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A counter by `labels`, registered.
fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

/// A gauge by `labels`, registered.
fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    registered(registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

/// A counter, registered.
fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    registered(registry, IntCounter::new(name, help)?)
}

/// A histogram by `labels` over `buckets`, registered.
fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> Result<HistogramVec, prometheus::Error> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    registered(registry, HistogramVec::new(opts, labels)?)
}

/// Registers `metric` with `registry` and hands it back.
fn registered<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: T,
) -> Result<T, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// The prediction log's instruments, registered.
fn log_counters(registry: &Registry) -> Result<LogCounters, prometheus::Error> {
    let counter = |name: &str, help: &str| counter(registry, name, help);
    Ok(LogCounters {
        written: counter(
            "predictions_logged_total",
            "Predictions committed to the database",
        )?,
        unlogged: counter(
            "predictions_unlogged_total",
            "Predictions answered but not logged (backlog full, refused, or left at shutdown)",
        )?,
        rejected: counter(
            "predictions_rejected_total",
            "Predictions the database refused for their data, set aside (also counted as unlogged)",
        )?,
        write_errors: counter(
            "prediction_log_write_errors_total",
            "Failed prediction-log insert attempts (each is retried)",
        )?,
        backlog: registered(
            registry,
            IntGauge::new(
                "prediction_log_backlog",
                "Predictions answered and waiting to be written",
            )?,
        )?,
    })
}
