//! The inference engine: the model on its own thread, fed by a bounded queue.
//!
//! As in text-embeddings-inference, the model never runs on a tokio worker.
//! Handlers push a [`Job`] into a bounded `std::sync::mpsc` channel (a full
//! queue is an immediate 429, never a wait) and await a oneshot reply. The
//! engine thread takes the first waiting job, then keeps collecting jobs until
//! the batch reaches `max_batch_size` rows or `max_batch_tokens` tokens, or
//! `max_batch_wait` has passed, and runs them:
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
//! timeout); [`Engine::cost_budget`] is what requests are checked against.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::metrics::EngineMetrics;
use super::schedule::SamplingQueue;
use crate::model::{Classifier, DropoutMode};
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

/// What a job asks of the model.
#[derive(Debug)]
pub enum Work {
    /// Deterministic logits for each row.
    Classify {
        /// Token ids per input.
        rows: Vec<Vec<u32>>,
        /// Also the mean last hidden state of each row (for the feature distance).
        features: bool,
    },
    /// MC-dropout samples for each row.
    Sample {
        /// Token ids per input.
        rows: Vec<Vec<u32>>,
        /// Samples per input.
        samples: usize,
        /// Seed of the dropout masks.
        seed: u64,
        /// Where dropout is applied.
        mode: SamplingMode,
        /// Also each row's mean last hidden state, from a deterministic pass
        /// of that row alone.
        features: bool,
    },
}

impl Work {
    fn rows(&self) -> usize {
        match self {
            Work::Classify { rows, .. } => rows.len(),
            Work::Sample { rows, samples, .. } => rows.len() * samples,
        }
    }

    fn tokens(&self) -> usize {
        match self {
            Work::Classify { rows, .. } => rows.iter().map(Vec::len).sum(),
            Work::Sample { rows, samples, .. } => {
                rows.iter().map(Vec::len).sum::<usize>() * samples
            }
        }
    }

    /// What the job costs the engine of a model of `layers` layers, in token
    /// passes: tokens × the passes each token goes through. `head` sampling
    /// runs the encoder once per input, `full` sampling once per sample (and
    /// once more for features), `top` k layers of L once per input and the
    /// fraction k / L once per sample.
    pub fn cost(&self, layers: usize) -> usize {
        match self {
            Work::Classify { rows, .. } => rows.iter().map(Vec::len).sum(),
            Work::Sample {
                rows,
                samples,
                mode,
                features,
                ..
            } => {
                let tokens: usize = rows.iter().map(Vec::len).sum();
                match mode {
                    SamplingMode::Head => tokens,
                    SamplingMode::Full => tokens * (samples + usize::from(*features)),
                    SamplingMode::Top(k) => {
                        tokens + (tokens * samples * (*k).min(layers)).div_ceil(layers.max(1))
                    }
                }
            }
        }
    }
}

/// The engine's answer.
#[derive(Debug)]
pub enum Output {
    /// Raw logits per input, and mean last hidden states when asked for (else empty).
    Logits(Vec<Vec<f32>>, Vec<Vec<f32>>),
    /// Softmax probabilities per input per sample, and mean last hidden
    /// states when asked for (else empty).
    Samples(Vec<Vec<Vec<f32>>>, Vec<Vec<f32>>),
}

/// An answer plus where the time went.
#[derive(Debug)]
pub struct Answer {
    /// The result.
    pub output: Output,
    /// Time spent waiting in the queue.
    pub queued: Duration,
    /// Time spent computing this job's batch.
    pub inference: Duration,
}

/// Logits and (possibly empty) features of one classify job.
type ClassifyOutput = crate::model::LogitsAndFeatures;

/// A unit of work with its reply channel.
pub struct Job {
    pub(super) work: Work,
    pub(super) reply: oneshot::Sender<Result<Answer, String>>,
    pub(super) enqueued: Instant,
}

/// Why a job could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full.
    Full,
    /// The engine has stopped.
    Stopped,
}

/// A handle to the engine thread; cloning shares the same queue.
#[derive(Clone)]
pub struct Engine {
    queue: SyncSender<Job>,
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

    /// Queues work without waiting; the receiver yields the answer.
    pub fn submit(
        &self,
        work: Work,
    ) -> Result<oneshot::Receiver<Result<Answer, String>>, SubmitError> {
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            work,
            reply,
            enqueued: Instant::now(),
        };
        self.depth.fetch_add(1, Ordering::SeqCst);
        match self.queue.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::Full,
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
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
    fn run(&self, receiver: Receiver<Job>) {
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
            let sample = self.answer_classify_jobs(jobs);
            sampling.extend(sample);
            sampling.step(self);
        }
        tracing::info!("inference engine stopped");
    }

    /// Gathers jobs into one batch within the row, token and time budgets.
    fn collect(&self, first: Job, receiver: &Receiver<Job>) -> Vec<Job> {
        let deadline = Instant::now() + self.settings.max_batch_wait;
        let (mut rows, mut tokens) = (first.work.rows(), first.work.tokens());
        let mut jobs = vec![first];
        while rows < self.settings.max_batch_size && tokens < self.settings.max_batch_tokens {
            let wait = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(wait) {
                Ok(job) => {
                    rows += job.work.rows();
                    tokens += job.work.tokens();
                    jobs.push(job);
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        jobs
    }

    /// Answers the classify jobs among `jobs` (sharing forward passes) and
    /// returns the sampling jobs; jobs whose client has gone are dropped.
    fn answer_classify_jobs(&self, jobs: Vec<Job>) -> Vec<Job> {
        let started = Instant::now();
        let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
        let (classify, sample): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| matches!(j.work, Work::Classify { .. }));
        if classify.is_empty() {
            return sample;
        }
        let logits = self.classify_all(&classify);
        let inference = started.elapsed();
        for (job, result) in classify.into_iter().zip(logits) {
            let answer = result.map(|(l, f)| Answer {
                output: Output::Logits(l, f),
                queued: started - job.enqueued,
                inference,
            });
            let _ = job.reply.send(answer);
        }
        sample
    }

    /// Deterministic logits (and features, for jobs that ask) for every
    /// classify job, sharing forward passes. Should a shared pass fail, each
    /// job is computed alone, so one bad row fails only its own request.
    fn classify_all(&self, jobs: &[Job]) -> Vec<Result<ClassifyOutput, String>> {
        match self.classify_shared(jobs) {
            Ok(out) => out.into_iter().map(Ok).collect(),
            Err(e) if jobs.len() == 1 => vec![Err(e)],
            Err(_) => jobs
                .iter()
                .map(|job| {
                    self.classify_shared(std::slice::from_ref(job))?
                        .pop()
                        .ok_or_else(|| "no output for the job".to_string())
                })
                .collect(),
        }
    }

    fn classify_shared(&self, jobs: &[Job]) -> Result<Vec<ClassifyOutput>, String> {
        let mut all: Vec<(usize, usize, &[u32])> = Vec::new();
        let mut any_features = false;
        for (j, job) in jobs.iter().enumerate() {
            if let Work::Classify { rows, features } = &job.work {
                all.extend(rows.iter().enumerate().map(|(i, r)| (j, i, r.as_slice())));
                any_features |= *features;
            }
        }
        let wants = |j: usize| matches!(jobs[j].work, Work::Classify { features: true, .. });
        let mut out: Vec<ClassifyOutput> = jobs
            .iter()
            .enumerate()
            .map(|(j, job)| {
                let n = job.work.rows();
                (
                    vec![Vec::new(); n],
                    vec![Vec::new(); if wants(j) { n } else { 0 }],
                )
            })
            .collect();
        // Sorted by length so that each pass pads little.
        let mut order: Vec<usize> = (0..all.len()).collect();
        order.sort_by_key(|&i| all[i].2.len());
        for chunk in self.chunks(&order, |i| all[i].2.len()) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| all[i].2).collect();
            self.metrics.batch_rows.observe(batch.len() as f64);
            let computed = if any_features {
                self.classifier.logits_and_features(&batch)
            } else {
                self.classifier
                    .logits(&batch, DropoutMode::Off)
                    .map(|l| (l, Vec::new()))
            };
            match computed {
                Ok((logits, mut features)) => {
                    for (n, (&i, l)) in chunk.iter().zip(logits).enumerate() {
                        let (j, k, _) = all[i];
                        out[j].0[k] = l;
                        if wants(j) {
                            out[j].1[k] = std::mem::take(&mut features[n]);
                        }
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(out)
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

    /// The passes of input `index` of a sampling job (see [`sample_input`]
    /// for why inputs never share a pass).
    pub(super) fn start_input(&self, work: &Work, index: usize) -> Result<InputSampling, String> {
        let Work::Sample {
            rows,
            samples,
            seed,
            mode,
            features,
        } = work
        else {
            return Err("not a sampling job".into());
        };
        let row = rows.get(index).ok_or("no such input")?;
        self.metrics.mc_samples.inc_by(*samples as u64);
        Ok(InputSampling::new(
            row,
            *samples,
            *seed,
            self.pass_budget(),
            *mode,
            *features,
        ))
    }

    /// Runs the next pass of one input's sampling.
    pub(super) fn run_pass(&self, sampling: &mut InputSampling) -> Result<(), String> {
        let rows = sampling.step(&self.classifier).map_err(|e| e.to_string())?;
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

    fn classify(rows: Vec<Vec<u32>>) -> Work {
        Work::Classify {
            rows,
            features: false,
        }
    }

    #[tokio::test]
    async fn a_bad_row_fails_only_its_own_request_not_the_batch_it_shares() {
        let (engine, worker) = fixture_engine(Duration::from_millis(300));
        let good = engine.submit(classify(vec![vec![2, 40, 41, 3]])).unwrap();
        let bad = engine
            .submit(classify(vec![vec![2, 1_000_000, 3]]))
            .unwrap();
        let also_good = engine.submit(classify(vec![vec![2, 50, 3]])).unwrap();
        assert!(good.await.unwrap().is_ok());
        assert!(bad.await.unwrap().is_err());
        assert!(also_good.await.unwrap().is_ok());
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
        let work = |mode, features| Work::Sample {
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
