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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::model::{Classifier, DropoutMode};
use crate::uncertainty::{sample_input, sample_input_with_features, PassBudget, SamplingMode};

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

/// Probabilities per input per sample, and (possibly empty) features, of one sampling job.
type SampleOutput = (Vec<Vec<Vec<f32>>>, Vec<Vec<f32>>);

/// Logits and (possibly empty) features of one classify job.
type ClassifyOutput = crate::model::LogitsAndFeatures;

/// A unit of work with its reply channel.
pub struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Answer, String>>,
    enqueued: Instant,
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
}

impl Engine {
    /// Starts the engine thread over `classifier`; it warms up, then sets `ready`.
    pub fn start(
        classifier: Arc<Classifier>,
        settings: BatchSettings,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (queue, receiver) = mpsc::sync_channel(settings.queue_capacity.max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            classifier,
            settings,
            metrics,
            depth: depth.clone(),
        };
        let ready_flag = ready.clone();
        let handle = std::thread::Builder::new()
            .name("candor-inference".into())
            .spawn(move || {
                worker.warm_up();
                ready_flag.store(true, Ordering::SeqCst);
                worker.run(receiver);
            })?;
        Ok((
            Self {
                queue,
                depth,
                ready,
            },
            handle,
        ))
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

    /// True once the warm-up pass has run.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Jobs waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }
}

struct Worker {
    classifier: Arc<Classifier>,
    settings: BatchSettings,
    metrics: Arc<Metrics>,
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

    fn run(&self, receiver: Receiver<Job>) {
        while let Ok(first) = receiver.recv() {
            let jobs = self.collect(first, &receiver);
            self.depth.fetch_sub(jobs.len(), Ordering::SeqCst);
            self.metrics
                .queue_depth
                .set(self.depth.load(Ordering::SeqCst) as i64);
            self.process(jobs);
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

    fn process(&self, jobs: Vec<Job>) {
        let started = Instant::now();
        // Requests that gave up (timed out or disconnected) are not computed.
        let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
        let (classify, sample): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| matches!(j.work, Work::Classify { .. }));
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
        for job in sample {
            let began = Instant::now();
            let result = self.sample(&job.work, &job.reply);
            let answer = result.map(|(s, f)| Answer {
                output: Output::Samples(s, f),
                queued: began - job.enqueued,
                inference: began.elapsed(),
            });
            let _ = job.reply.send(answer);
        }
    }

    /// Deterministic logits (and features, for jobs that ask) for every
    /// classify job, sharing forward passes.
    fn classify_all(&self, jobs: &[Job]) -> Vec<Result<ClassifyOutput, String>> {
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
                self.classifier.logits_and_mean_hidden(&batch)
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
                Err(e) => return jobs.iter().map(|_| Err(e.to_string())).collect(),
            }
        }
        out.into_iter().map(Ok).collect()
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

    /// MC-dropout probabilities for one sampling job, input by input (see
    /// [`sample_input`] for why inputs never share a pass).
    fn sample(
        &self,
        work: &Work,
        reply: &oneshot::Sender<Result<Answer, String>>,
    ) -> Result<SampleOutput, String> {
        let Work::Sample {
            rows,
            samples,
            seed,
            mode,
            features,
        } = work
        else {
            return Ok((Vec::new(), Vec::new()));
        };
        self.metrics
            .mc_samples
            .inc_by(*samples as u64 * rows.len() as u64);
        let budget = PassBudget {
            rows: self.settings.max_batch_size,
            tokens: self.settings.max_batch_tokens,
        };
        let mut out = Vec::with_capacity(rows.len());
        let mut hidden = Vec::new();
        for row in rows {
            if reply.is_closed() {
                // The client has gone (timeout or disconnect): stop spending compute on it.
                return Err("abandoned".into());
            }
            let per_pass = match mode {
                SamplingMode::Head => *samples,
                SamplingMode::Full => budget.samples_per_pass(row.len()),
            };
            for start in (0..*samples).step_by(per_pass.max(1)) {
                self.metrics
                    .batch_rows
                    .observe(per_pass.min(samples - start) as f64);
            }
            if *features {
                let (probabilities, mean) = sample_input_with_features(
                    &self.classifier,
                    row,
                    *samples,
                    *seed,
                    budget,
                    *mode,
                )
                .map_err(|e| e.to_string())?;
                out.push(probabilities);
                hidden.push(mean);
            } else {
                out.push(
                    sample_input(&self.classifier, row, *samples, *seed, budget, *mode)
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        Ok((out, hidden))
    }
}
