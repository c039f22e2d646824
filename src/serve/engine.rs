//! The inference engine: the model on its own thread, fed by a bounded queue.
//!
//! As in text-embeddings-inference, the model never runs on a tokio worker.
//! Handlers queue work with [`Engine::classify`] or [`Engine::sample`]: each
//! puts a job, with a reply channel for its own kind of answer, into a bounded
//! `std::sync::mpsc` channel (a full queue is an immediate
//! [`EngineError::QueueFull`], a 429, never a wait) and hands back a
//! [`Pending`] answer to await. The engine thread takes the first waiting
//! job, then keeps collecting jobs until the batch reaches `max_batch_size`
//! rows or `max_batch_tokens` tokens, or `max_batch_wait` has passed, and
//! runs them:
//!
//! - plain predictions of all collected requests share forward passes, sorted
//!   by length and cut into chunks within the row and token budgets;
//! - an uncertainty request's T samples are replicated into one pass per input
//!   (T rows with T dropout keys), never T separate passes. These passes do not
//!   mix inputs of different requests: floating-point sums depend on the shape
//!   of the batch, and only a pass whose shape depends on the input alone
//!   keeps "same input, same seed → bit-identical output" true under load.
//!
//! Sampling jobs do not run to completion one after another: the engine
//! runs one forward pass of one sampling job at a time, round-robin over the
//! jobs in progress, and between two passes answers every classify job that
//! has arrived (see [`super::schedule`]). A large request therefore delays a
//! small one by at most one pass, never by its whole run.
//!
//! At start-up the engine times a full sampling pass and derives the cost
//! budget of one request (tokens × samples it can finish within the request
//! timeout); [`Engine::cost_budget`] is what requests are checked against,
//! with [`Work::cost`].

mod work;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) use work::SamplingJob;
use work::{by_kind, ClassifyJob, Job, Queued};
pub use work::{Classified, ClassifyWork, EngineError, Pending, SampleWork, Sampled, Timed, Work};

use super::metrics::EngineMetrics;
use super::schedule::SamplingQueue;
use crate::model::{Classifier, DropoutMode, LogitsAndFeatures, ModelError};
use crate::uncertainty::{sample_input, InputSampling, PassBudget, SamplingMode};

/// How the engine groups work.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Most rows (inputs, or inputs × samples) in one forward pass.
    pub max_batch_size: usize,
    /// Most padded tokens (rows × longest row) in one forward pass.
    pub max_batch_tokens: usize,
    /// Longest time the first job of a batch waits for company.
    pub max_batch_wait: Duration,
    /// Jobs that may wait in the queue before new ones are refused.
    pub queue_capacity: usize,
}

/// A handle to the engine thread; cloning shares the same queue.
#[derive(Clone)]
pub struct Engine {
    queue: SyncSender<Queued>,
    depth: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
    alive: Arc<AtomicBool>,
    cost_budget: Arc<AtomicUsize>,
}

/// How the engine sizes the cost budget of one request.
#[derive(Debug, Clone, Copy)]
pub struct CostSettings {
    /// A fixed budget in token passes; 0 derives it from a timed pass.
    pub max_request_cost: usize,
    /// The request timeout the derived budget must fit in.
    pub request_timeout: Duration,
}

/// Share of the request timeout one request may fill by itself: the rest is
/// room for the queue, the other requests sharing the engine and a slower
/// moment than the timed pass.
const TIMEOUT_SHARE_PER_REQUEST: f64 = 0.5;

/// Clears the engine's `alive` flag when the thread ends, however it ends.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Engine {
    /// Starts the engine thread over `classifier`; it warms up, then sets `ready`.
    pub fn start(
        classifier: Arc<Classifier>,
        settings: BatchSettings,
        cost: CostSettings,
        metrics: EngineMetrics,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (queue, receiver) = mpsc::sync_channel(settings.queue_capacity.max(1));
        let engine = Self {
            queue,
            depth: Arc::new(AtomicUsize::new(0)),
            ready: Arc::new(AtomicBool::new(false)),
            alive: Arc::new(AtomicBool::new(true)),
            // Until the timed pass has run, requests (queued during warm-up) are not refused.
            cost_budget: Arc::new(AtomicUsize::new(match cost.max_request_cost {
                0 => usize::MAX,
                fixed => fixed,
            })),
        };
        let worker = Worker {
            classifier,
            settings,
            metrics,
            depth: engine.depth.clone(),
        };
        let (ready, alive, budget) = (
            engine.ready.clone(),
            engine.alive.clone(),
            engine.cost_budget.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("candor-inference".into())
            .spawn(move || {
                let _alive = AliveGuard(alive);
                worker.warm_up();
                if cost.max_request_cost == 0 {
                    budget.store(
                        worker.derive_cost_budget(cost.request_timeout),
                        Ordering::SeqCst,
                    );
                }
                ready.store(true, Ordering::SeqCst);
                worker.run(receiver);
            })?;
        Ok((engine, handle))
    }

    /// Queues deterministic logits without waiting.
    pub fn classify(&self, work: ClassifyWork) -> Result<Pending<Classified>, EngineError> {
        self.submit(work, Queued::Classify)
    }

    /// Queues MC-dropout sampling without waiting.
    pub fn sample(&self, work: SampleWork) -> Result<Pending<Sampled>, EngineError> {
        self.submit(work, Queued::Sample)
    }

    /// Queues `work`, wrapped by `kind` with a reply channel of its own answer.
    fn submit<W, A>(
        &self,
        work: W,
        kind: fn(Job<W, A>) -> Queued,
    ) -> Result<Pending<A>, EngineError> {
        let (job, pending) = Job::new(work);
        self.depth.fetch_add(1, Ordering::SeqCst);
        match self.queue.try_send(kind(job)) {
            Ok(()) => Ok(pending),
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => EngineError::QueueFull,
                    TrySendError::Disconnected(_) => EngineError::Stopped,
                })
            }
        }
    }

    /// True once the warm-up pass has run and while the engine thread lives.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.is_alive()
    }

    /// False once the engine thread has ended (stopped, or died).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Most token passes one request may cost (see [`Work::cost`]).
    pub fn cost_budget(&self) -> usize {
        self.cost_budget.load(Ordering::SeqCst)
    }

    /// Jobs waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }
}

pub(super) struct Worker {
    classifier: Arc<Classifier>,
    settings: BatchSettings,
    metrics: EngineMetrics,
    depth: Arc<AtomicUsize>,
}

impl Worker {
    fn warm_up(&self) {
        let rows = [vec![self.classifier.encoder.pad_id(); 8]];
        let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        if let Err(e) = self.classifier.logits(&refs, DropoutMode::Off) {
            tracing::error!(error = %e, "warm-up pass failed");
        }
    }

    /// Times full sampling passes as large as a batch allows and turns the
    /// rate into what one request may cost within `timeout`.
    fn derive_cost_budget(&self, timeout: Duration) -> usize {
        let budget = self.pass_budget();
        let length = self
            .classifier
            .encoder
            .max_length()
            .min(budget.tokens)
            .max(1);
        let samples = budget.samples_per_pass(length);
        let row = vec![self.classifier.encoder.pad_id(); length];
        let mut fastest = Duration::MAX;
        for seed in 0..3 {
            let started = Instant::now();
            if let Err(e) = sample_input(
                &self.classifier,
                &row,
                samples,
                seed,
                budget,
                SamplingMode::Full,
            ) {
                tracing::error!(error = %e, "timing pass failed");
                return (length * samples).max(1);
            }
            fastest = fastest.min(started.elapsed());
        }
        let per_second = (length * samples) as f64 / fastest.as_secs_f64().max(1e-6);
        let cost = (per_second * timeout.as_secs_f64() * TIMEOUT_SHARE_PER_REQUEST) as usize;
        tracing::info!(
            token_passes_per_second = per_second.round(),
            max_request_cost = cost,
            "cost budget derived from a timed pass"
        );
        cost.max(length)
    }

    fn pass_budget(&self) -> PassBudget {
        PassBudget {
            rows: self.settings.max_batch_size,
            tokens: self.settings.max_batch_tokens,
        }
    }

    /// Serves until every sender is gone and the sampling work in hand is done.
    fn run(&self, receiver: Receiver<Queued>) {
        let mut sampling = SamplingQueue::default();
        loop {
            let jobs = if sampling.is_empty() {
                match receiver.recv() {
                    Ok(first) => self.collect(first, &receiver),
                    Err(_) => break,
                }
            } else {
                // Work is in hand: take what has arrived, wait for nothing.
                receiver.try_iter().collect()
            };
            self.depth.fetch_sub(jobs.len(), Ordering::SeqCst);
            self.metrics
                .queue_depth
                .set(self.depth.load(Ordering::SeqCst) as i64);
            let (classify, sample) = by_kind(jobs);
            self.answer_classify_jobs(classify);
            sampling.extend(sample);
            sampling.step(self);
        }
        tracing::info!("inference engine stopped");
    }

    /// Gathers jobs into one batch within the row, token and time budgets.
    fn collect(&self, first: Queued, receiver: &Receiver<Queued>) -> Vec<Queued> {
        let deadline = Instant::now() + self.settings.max_batch_wait;
        let (mut rows, mut tokens) = first.size();
        let mut jobs = vec![first];
        while rows < self.settings.max_batch_size && tokens < self.settings.max_batch_tokens {
            let wait = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(wait) {
                Ok(job) => {
                    let (job_rows, job_tokens) = job.size();
                    rows += job_rows;
                    tokens += job_tokens;
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        jobs
    }

    /// Answers `jobs`, sharing forward passes.
    fn answer_classify_jobs(&self, jobs: Vec<ClassifyJob>) {
        if jobs.is_empty() {
            return;
        }
        let started = Instant::now();
        let results = self.classify_all(&jobs);
        let inference = started.elapsed();
        for (job, result) in jobs.into_iter().zip(results) {
            match result {
                Ok(classified) => job.answer(classified, started, inference),
                Err(e) => job.fail(e.into()),
            }
        }
    }

    /// Deterministic logits (and features, for jobs that ask) for every
    /// classify job, sharing forward passes. Should a shared pass fail, each
    /// job is computed alone, so one bad row fails only its own request.
    fn classify_all(&self, jobs: &[ClassifyJob]) -> Vec<Result<Classified, ModelError>> {
        let mut out: Vec<Classified> = jobs.iter().map(|j| Classified::unfilled(&j.work)).collect();
        match self.classify_shared(jobs, &mut out) {
            Ok(()) => out.into_iter().map(Ok).collect(),
            Err(e) if jobs.len() == 1 => vec![Err(e)],
            Err(_) => jobs
                .iter()
                .map(|job| {
                    let mut alone = [Classified::unfilled(&job.work)];
                    self.classify_shared(std::slice::from_ref(job), &mut alone)?;
                    let [classified] = alone;
                    Ok(classified)
                })
                .collect(),
        }
    }

    /// Fills `out` (one answer per job) from passes over the rows of all
    /// `jobs` together.
    fn classify_shared(
        &self,
        jobs: &[ClassifyJob],
        out: &mut [Classified],
    ) -> Result<(), ModelError> {
        // (job, input, row) of every input.
        let all: Vec<(usize, usize, &[u32])> = jobs
            .iter()
            .enumerate()
            .flat_map(|(j, job)| {
                let rows = job.work.rows.iter().enumerate();
                rows.map(move |(i, row)| (j, i, row.as_slice()))
            })
            .collect();
        let any_features = jobs.iter().any(|job| job.work.features);
        // Sorted by length so that each pass pads little.
        let mut order: Vec<usize> = (0..all.len()).collect();
        order.sort_by_key(|&i| all[i].2.len());
        for chunk in self.chunks(&order, |i| all[i].2.len()) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| all[i].2).collect();
            self.metrics.batch_rows.observe(batch.len() as f64);
            let LogitsAndFeatures {
                logits,
                mut features,
            } = self.deterministic_pass(&batch, any_features)?;
            for (n, (&i, l)) in chunk.iter().zip(logits).enumerate() {
                let (j, k, _) = all[i];
                out[j].logits[k] = l;
                if jobs[j].work.features {
                    out[j].features[k] = std::mem::take(&mut features[n]);
                }
            }
        }
        Ok(())
    }

    /// One dropout-off pass over `batch`; features (else empty) when asked for.
    fn deterministic_pass(
        &self,
        batch: &[&[u32]],
        features: bool,
    ) -> Result<LogitsAndFeatures, ModelError> {
        if features {
            return self.classifier.logits_and_features(batch);
        }
        let logits = self.classifier.logits(batch, DropoutMode::Off)?;
        Ok(LogitsAndFeatures {
            logits,
            features: Vec::new(),
        })
    }

    /// Cuts length-sorted rows into chunks within the row and token budgets.
    fn chunks(&self, order: &[usize], len: impl Fn(usize) -> usize) -> Vec<Vec<usize>> {
        let mut chunks = Vec::new();
        let mut current: Vec<usize> = Vec::new();
        for &i in order {
            let longest = current
                .iter()
                .map(|&c| len(c))
                .max()
                .unwrap_or(0)
                .max(len(i));
            let fits = current.len() < self.settings.max_batch_size
                && longest * (current.len() + 1) <= self.settings.max_batch_tokens;
            if !fits && !current.is_empty() {
                chunks.push(std::mem::take(&mut current));
            }
            current.push(i);
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        chunks
    }

    /// The passes of one input `row` of a sampling job (see [`sample_input`]
    /// for why inputs never share a pass).
    pub(super) fn start_input(&self, work: &SampleWork, row: &[u32]) -> InputSampling {
        self.metrics.mc_samples.inc_by(work.samples as u64);
        InputSampling::new(
            row,
            work.samples,
            work.seed,
            self.pass_budget(),
            work.mode,
            work.features,
        )
    }

    /// Runs the next pass of one input's sampling.
    pub(super) fn run_pass(&self, sampling: &mut InputSampling) -> Result<(), ModelError> {
        let rows = sampling.step(&self.classifier)?;
        self.metrics.batch_rows.observe(rows as f64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_engine(max_batch_wait: Duration) -> (Engine, std::thread::JoinHandle<()>) {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-trec6");
        let classifier = Arc::new(Classifier::load(&dir).expect("the fixture loads"));
        let settings = BatchSettings {
            max_batch_size: 32,
            max_batch_tokens: 4096,
            max_batch_wait,
            queue_capacity: 16,
        };
        let cost = CostSettings {
            max_request_cost: 1_000_000,
            request_timeout: Duration::from_secs(10),
        };
        let metrics = crate::serve::metrics::Metrics::new().expect("metrics");
        Engine::start(classifier, settings, cost, metrics.engine("tiny-trec6"))
            .expect("the engine starts")
    }

    fn classify(rows: Vec<Vec<u32>>) -> ClassifyWork {
        ClassifyWork {
            rows,
            features: false,
        }
    }

    #[tokio::test]
    async fn a_bad_row_fails_only_its_own_request_not_the_batch_it_shares() {
        let (engine, worker) = fixture_engine(Duration::from_millis(300));
        let good = engine.classify(classify(vec![vec![2, 40, 41, 3]])).unwrap();
        let bad = engine
            .classify(classify(vec![vec![2, 1_000_000, 3]]))
            .unwrap();
        let also_good = engine.classify(classify(vec![vec![2, 50, 3]])).unwrap();
        assert!(good.await.is_ok());
        assert!(matches!(bad.await, Err(EngineError::Model(_))));
        assert!(also_good.await.is_ok());
        assert!(engine.is_ready());
        drop(engine);
        worker.join().unwrap();
    }

    #[test]
    fn readiness_ends_with_the_engine_thread_however_it_ends() {
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let died = std::thread::spawn(move || {
            let _guard = AliveGuard(flag);
            panic!("the inference thread dies");
        })
        .join();
        assert!(died.is_err());
        assert!(!alive.load(Ordering::SeqCst));
    }

    #[test]
    fn the_cost_of_sampling_counts_the_layers_each_sample_runs_through() {
        let work = |mode, features| SampleWork {
            rows: vec![vec![1; 10], vec![1; 30]],
            samples: 20,
            seed: 0,
            mode,
            features,
        };
        assert_eq!(work(SamplingMode::Full, false).cost(4), 40 * 20);
        assert_eq!(work(SamplingMode::Full, true).cost(4), 40 * 21);
        assert_eq!(work(SamplingMode::Head, true).cost(4), 40);
        // The bottom three of four layers once, the top one for each sample.
        assert_eq!(work(SamplingMode::Top(1), true).cost(4), 40 + 40 * 20 / 4);
        assert_eq!(classify(vec![vec![1; 7], vec![1; 5]]).cost(4), 12);
    }
}
