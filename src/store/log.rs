//! The prediction log: handlers hand records to a bounded queue and return at
//! once; one writer task inserts them in batches, one transaction per batch
//! and model.
//!
//! While the database is away the writer retries the batch in hand with
//! back-off and the queue fills; the queue is the bounded backlog, bounded
//! both in requests and in bytes. A record that finds it full is not
//! logged, and that is counted (`candor_predictions_unlogged_total`) and
//! logged, never silent. On shutdown the writer keeps writing while requests
//! finish, then the queue closes and the writer drains it within a deadline
//! counted from the shutdown signal.
//!
//! When the database refuses a batch for its data (see
//! [`StoreError::is_refused_data`]), retrying the same batch would fail
//! forever and wedge everything behind it. The writer writes that batch's
//! rows one by one instead: the good ones land and each refused one is set
//! aside, counted (`candor_predictions_rejected_total`, a part of the
//! unlogged count) and logged with its id and the database's reason.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{PredictionRecord, Store, StoreError};

/// How the log queues and writes.
#[derive(Debug, Clone, Copy)]
pub struct LogSettings {
    /// Requests' worth of predictions that may wait for the database (the backlog).
    pub capacity: usize,
    /// Most bytes (approximate: texts included) the backlog may hold.
    pub max_backlog_bytes: usize,
    /// Most predictions per insert transaction.
    pub batch_rows: usize,
    /// How long shutdown waits for the backlog to be written.
    pub drain_timeout: Duration,
}

/// Prometheus instruments the writer updates (registered by the server).
#[derive(Clone)]
pub struct LogCounters {
    /// Predictions committed to the database.
    pub written: IntCounter,
    /// Predictions that could not be logged (queue full, refused by the
    /// database, or still queued when shutdown gave up).
    pub unlogged: IntCounter,
    /// Of the unlogged, those the database refused (their data, not its state).
    pub rejected: IntCounter,
    /// Failed insert attempts (each is retried).
    pub write_errors: IntCounter,
    /// Predictions accepted but not yet committed.
    pub backlog: IntGauge,
}

enum Entry {
    Predictions(i64, Vec<PredictionRecord>),
    Flush(oneshot::Sender<()>),
}

/// Why a flush did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The writer is stopping or stopped.
    #[error("the prediction log is closed")]
    Closed,
    /// The backlog was not written in time (the database is slow or away).
    #[error("the prediction log did not reach the database in time")]
    Timeout,
}

/// The handle handlers log through, for one model; cheap to clone.
#[derive(Clone)]
pub struct PredictionLog {
    queue: mpsc::Sender<Entry>,
    state: Arc<WriterState>,
    /// The store's id of the model whose predictions this handle logs.
    model_id: i64,
}

/// What the writer knows about the database, for readiness and metrics.
struct WriterState {
    counters: LogCounters,
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    last_overflow_warning: AtomicU64,
    started: Instant,
    backlog_bytes: AtomicUsize,
    max_backlog_bytes: usize,
}

/// The running writer: stop it with [`LogWriter::finish`].
pub struct LogWriter {
    task: JoinHandle<()>,
    state: Arc<WriterState>,
    drain_timeout: Duration,
    /// Closes the queue: every request that could log has ended. (Waiting
    /// for every [`PredictionLog`] handle to drop would tie the writer's end
    /// to whatever still holds one.)
    close: oneshot::Sender<()>,
}

impl PredictionLog {
    /// Starts the writer; this handle logs predictions of `model_id` (see
    /// [`PredictionLog::for_model`] for other models).
    pub fn start(
        store: Store,
        model_id: i64,
        settings: LogSettings,
        counters: LogCounters,
    ) -> (PredictionLog, LogWriter) {
        let (queue, receiver) = mpsc::channel(settings.capacity.max(1));
        let (close, closed) = oneshot::channel();
        let state = Arc::new(WriterState {
            counters,
            failing: AtomicBool::new(false),
            last_error: Mutex::new(None),
            last_overflow_warning: AtomicU64::new(0),
            started: Instant::now(),
            backlog_bytes: AtomicUsize::new(0),
            max_backlog_bytes: settings.max_backlog_bytes,
        });
        let task = tokio::spawn(write_loop(
            store,
            Inbox {
                receiver,
                closed: Some(closed),
            },
            settings.batch_rows.max(1),
            state.clone(),
        ));
        (
            PredictionLog {
                queue,
                state: state.clone(),
                model_id,
            },
            LogWriter {
                task,
                state,
                drain_timeout: settings.drain_timeout,
                close,
            },
        )
    }

    /// A handle on the same writer that logs predictions of `model_id`.
    pub fn for_model(&self, model_id: i64) -> PredictionLog {
        PredictionLog {
            model_id,
            ..self.clone()
        }
    }

    /// Queues predictions for writing; never waits. When the backlog is full
    /// (in requests or in bytes) they are counted as unlogged and a warning
    /// is logged (at most once a second).
    pub fn record(&self, predictions: Vec<PredictionRecord>) {
        let count = predictions.len() as i64;
        if count == 0 {
            return;
        }
        let bytes = approximate_bytes(&predictions);
        if !self.state.reserve(bytes) {
            self.state.counters.unlogged.inc_by(count as u64);
            self.state
                .warn_overflow("the backlog's byte bound is reached");
            return;
        }
        self.state.counters.backlog.add(count);
        if let Err(e) = self
            .queue
            .try_send(Entry::Predictions(self.model_id, predictions))
        {
            self.state.counters.backlog.sub(count);
            self.state.release(bytes);
            self.state.counters.unlogged.inc_by(count as u64);
            self.state.warn_overflow(match e {
                mpsc::error::TrySendError::Full(_) => "the backlog is full",
                mpsc::error::TrySendError::Closed(_) => "the log is closed",
            });
        }
    }

    /// Waits until everything queued before this call is committed.
    pub async fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let (done, committed) = oneshot::channel();
        tokio::time::timeout(timeout, async {
            self.queue
                .send(Entry::Flush(done))
                .await
                .map_err(|_| FlushError::Closed)?;
            committed.await.map_err(|_| FlushError::Closed)
        })
        .await
        .map_err(|_| FlushError::Timeout)?
    }

    /// True while the last write attempt failed.
    pub fn is_failing(&self) -> bool {
        self.state.failing.load(Ordering::Relaxed)
    }

    /// The last write error, if the last attempt failed.
    pub fn last_error(&self) -> Option<String> {
        if self.is_failing() {
            self.state.last_error.lock().ok().and_then(|e| e.clone())
        } else {
            None
        }
    }

    /// Predictions accepted but not yet committed.
    pub fn backlog(&self) -> i64 {
        self.state.counters.backlog.get()
    }

    /// Approximate bytes the backlog holds.
    pub fn backlog_bytes(&self) -> usize {
        self.state.backlog_bytes.load(Ordering::Relaxed)
    }
}

fn approximate_bytes(records: &[PredictionRecord]) -> usize {
    records
        .iter()
        .map(PredictionRecord::approximate_bytes)
        .sum()
}

/// Predictions taken for one write, by model: one transaction per model.
#[derive(Default)]
struct Batch {
    rows: usize,
    by_model: BTreeMap<i64, Vec<PredictionRecord>>,
}

impl Batch {
    fn bytes(&self) -> usize {
        self.by_model.values().map(|r| approximate_bytes(r)).sum()
    }
}

impl WriterState {
    /// Counts `bytes` into the backlog unless that would pass its bound.
    fn reserve(&self, bytes: usize) -> bool {
        self.backlog_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes)
                    .filter(|&total| total <= self.max_backlog_bytes)
            })
            .is_ok()
    }

    /// Takes `bytes` out of the backlog once they are written or given up.
    fn release(&self, bytes: usize) {
        self.backlog_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn warn_overflow(&self, reason: &str) {
        let now = self.started.elapsed().as_secs() + 1;
        let last = self.last_overflow_warning.swap(now, Ordering::Relaxed);
        if last != now {
            tracing::warn!(
                reason,
                unlogged_total = self.counters.unlogged.get(),
                "predictions answered but not logged"
            );
        }
    }

    fn committed(&self, rows: usize) {
        self.counters.written.inc_by(rows as u64);
        self.counters.backlog.sub(rows as i64);
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("the database is back: prediction log writing again");
        }
    }

    fn failed(&self, error: &StoreError) {
        self.counters.write_errors.inc();
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error.to_string());
        }
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, "cannot write the prediction log; retrying with back-off");
        }
    }

    fn lost(&self, rows: usize, why: &str) {
        self.counters.unlogged.inc_by(rows as u64);
        self.counters.backlog.sub(rows as i64);
        tracing::error!(rows, why, "predictions answered but not logged");
    }

    /// A batch refused for its data: not the database being away, so the
    /// log stays ready and its rows are tried one by one.
    fn refused(&self, rows: usize, refusal: &StoreError) {
        tracing::warn!(
            rows,
            reason = %refusal.reason(),
            "the database refused a batch of predictions; writing its rows one by one"
        );
    }

    /// One prediction the database will not take: set aside, never retried.
    /// The log names its id and the database's reason, never its text.
    fn rejected(&self, row: &PredictionRecord, refusal: &StoreError) {
        self.counters.rejected.inc();
        self.counters.unlogged.inc();
        self.counters.backlog.dec();
        tracing::error!(
            prediction_id = %row.id,
            reason = %refusal.reason(),
            "the database refused a prediction; it is set aside, not logged"
        );
    }
}

impl LogWriter {
    /// Stops the log, called at the shutdown signal, while requests finish.
    ///
    /// Records from requests still in flight are accepted and written as
    /// usual; once `requests_done` resolves the queue closes and the writer
    /// stops when what is queued is written. It gives up `drain_timeout`
    /// after `grace` (the longest the requests can still take): what is
    /// still queued then is counted and reported as unlogged. So the whole
    /// shutdown takes at most the HTTP grace plus the drain timeout.
    pub async fn finish(
        self,
        requests_done: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) {
        let budget = grace.saturating_add(self.drain_timeout);
        let started = Instant::now();
        tracing::info!(
            backlog = self.state.counters.backlog.get(),
            "shutdown: the prediction log keeps writing while requests finish"
        );
        let _ = tokio::time::timeout(budget, requests_done).await;
        let _ = self.close.send(());
        let abort = self.task.abort_handle();
        let left = budget.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, self.task).await {
            Ok(_) => tracing::info!(
                written = self.state.counters.written.get(),
                "prediction log drained"
            ),
            Err(_) => {
                abort.abort();
                let left = self.state.counters.backlog.get().max(0) as usize;
                self.state.lost(
                    left,
                    "shutdown: the database did not take the backlog in time",
                );
            }
        }
    }
}

/// Longest time a batch waits to fill before it is written.
const LINGER: Duration = Duration::from_millis(20);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// The writer's end of the queue and its close signal.
struct Inbox {
    receiver: mpsc::Receiver<Entry>,
    /// Resolves when [`LogWriter::finish`] closes the queue; `None` once it has.
    closed: Option<oneshot::Receiver<()>>,
}

impl Inbox {
    /// The next entry; `None` once the queue is closed (by the close signal
    /// or because every handle is gone) and empty.
    async fn next(&mut self) -> Option<Entry> {
        loop {
            let Some(closed) = self.closed.as_mut() else {
                return self.receiver.recv().await;
            };
            tokio::select! {
                entry = self.receiver.recv() => return entry,
                _ = closed => {
                    // What is queued is still received; nothing new gets in.
                    self.closed = None;
                    self.receiver.close();
                }
            }
        }
    }
}

async fn write_loop(store: Store, mut inbox: Inbox, batch_rows: usize, state: Arc<WriterState>) {
    while let Some(first) = inbox.next().await {
        let mut batch = Batch::default();
        let mut waiting = Vec::new();
        take(first, &mut batch, &mut waiting);
        // Under load, waiting a moment for company turns many small
        // transactions into a few large ones; a lone prediction waits at
        // most LINGER, and a flush does not wait.
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.rows < batch_rows && waiting.is_empty() {
            match tokio::time::timeout_at(deadline, inbox.receiver.recv()).await {
                Ok(Some(entry)) => take(entry, &mut batch, &mut waiting),
                Ok(None) | Err(_) => break,
            }
        }
        for (&model_id, rows) in &batch.by_model {
            write_batch(&store, model_id, rows, &state).await;
        }
        state.release(batch.bytes());
        for done in waiting {
            let _ = done.send(());
        }
    }
}

fn take(entry: Entry, batch: &mut Batch, waiting: &mut Vec<oneshot::Sender<()>>) {
    match entry {
        Entry::Predictions(model_id, rows) => {
            batch.rows += rows.len();
            batch.by_model.entry(model_id).or_default().extend(rows);
        }
        Entry::Flush(done) => waiting.push(done),
    }
}

/// Writes one batch; when the database refuses it, writes its rows one by
/// one so that only the refused ones are set aside.
async fn write_batch(
    store: &Store,
    model_id: i64,
    batch: &[PredictionRecord],
    state: &WriterState,
) {
    let Err(refusal) = write_with_retry(store, model_id, batch, state).await else {
        return;
    };
    if let [row] = batch {
        state.rejected(row, &refusal);
        return;
    }
    state.refused(batch.len(), &refusal);
    for row in batch {
        let rows = std::slice::from_ref(row);
        if let Err(refusal) = write_with_retry(store, model_id, rows, state).await {
            state.rejected(row, &refusal);
        }
    }
}

/// Writes rows in one transaction, retrying with exponential back-off
/// while the database is away; gives up, with the error, only when retrying
/// cannot help (the database refuses the data).
async fn write_with_retry(
    store: &Store,
    model_id: i64,
    batch: &[PredictionRecord],
    state: &WriterState,
) -> Result<(), StoreError> {
    let mut wait = FIRST_RETRY;
    loop {
        let started = Instant::now();
        match store.insert_predictions(model_id, batch).await {
            Ok(()) => {
                tracing::debug!(
                    rows = batch.len(),
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "prediction log batch written"
                );
                state.committed(batch.len());
                return Ok(());
            }
            Err(e) if e.is_permanent() => {
                state.counters.write_errors.inc();
                return Err(e);
            }
            Err(e) => {
                state.failed(&e);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LONGEST_RETRY);
            }
        }
    }
}
