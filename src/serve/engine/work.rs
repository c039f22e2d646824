//! What crosses the engine's boundary: the kinds of work, their answers and
//! why there may be none, and the job that carries a piece of work to the
//! engine thread with a reply channel for its own kind of answer (so a
//! classify request cannot be answered with samples, nor the reverse).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Engine;
use crate::model::ModelError;
use crate::uncertainty::SamplingMode;

/// Deterministic logits for each row; answered with [`Classified`].
#[derive(Debug)]
pub struct ClassifyWork {
    /// Token ids per input.
    pub rows: Vec<Vec<u32>>,
    /// Also each row's feature vector ([`Classifier::features`](crate::model::Classifier::features), for the
    /// feature distance).
    pub features: bool,
}

/// MC-dropout samples for each row; answered with [`Sampled`].
#[derive(Debug)]
pub struct SampleWork {
    /// Token ids per input.
    pub rows: Vec<Vec<u32>>,
    /// Samples per input.
    pub samples: usize,
    /// Seed of the dropout masks.
    pub seed: u64,
    /// Where dropout is applied.
    pub mode: SamplingMode,
    /// Also each row's feature vector ([`Classifier::features`](crate::model::Classifier::features)), from a
    /// deterministic pass of that row alone.
    pub features: bool,
}

/// A kind of work the engine does: what it costs, and the typed method of
/// [`Engine`] that queues it.
pub trait Work {
    /// The engine's answer to this kind of work.
    type Answer;

    /// What the job costs the engine of a model of `layers` layers, in token
    /// passes: tokens × the passes each token goes through.
    fn cost(&self, layers: usize) -> usize;

    /// Queues the work on `engine` without waiting.
    fn queue_on(self, engine: &Engine) -> Result<Pending<Self::Answer>, EngineError>;
}

/// Tokens in all of `rows`.
fn token_count(rows: &[Vec<u32>]) -> usize {
    rows.iter().map(Vec::len).sum()
}

impl Work for ClassifyWork {
    type Answer = Classified;

    /// One pass over each token.
    fn cost(&self, _layers: usize) -> usize {
        token_count(&self.rows)
    }

    fn queue_on(self, engine: &Engine) -> Result<Pending<Classified>, EngineError> {
        engine.classify(self)
    }
}

impl Work for SampleWork {
    type Answer = Sampled;

    /// `head` sampling runs the encoder once per input, `full` sampling once
    /// per sample (and once more for features), `top` k layers of L once per
    /// input and the fraction k / L once per sample.
    fn cost(&self, layers: usize) -> usize {
        let tokens = token_count(&self.rows);
        match self.mode {
            SamplingMode::Head => tokens,
            SamplingMode::Full => tokens * (self.samples + usize::from(self.features)),
            SamplingMode::Top(k) => {
                tokens + (tokens * self.samples * k.min(layers)).div_ceil(layers.max(1))
            }
        }
    }

    fn queue_on(self, engine: &Engine) -> Result<Pending<Sampled>, EngineError> {
        engine.sample(self)
    }
}

/// The answer to a [`ClassifyWork`].
#[derive(Debug)]
pub struct Classified {
    /// Raw logits per input.
    pub logits: Vec<Vec<f32>>,
    /// Feature vectors per input when the work asked for them, else empty.
    pub features: Vec<Vec<f32>>,
}

impl Classified {
    /// Empty rows for each input of `work`, to be filled by the passes.
    pub(super) fn unfilled(work: &ClassifyWork) -> Self {
        let inputs = work.rows.len();
        Self {
            logits: vec![Vec::new(); inputs],
            features: vec![Vec::new(); if work.features { inputs } else { 0 }],
        }
    }
}

/// The answer to a [`SampleWork`].
#[derive(Debug, Default)]
pub struct Sampled {
    /// Softmax probabilities per input per sample.
    pub probabilities: Vec<Vec<Vec<f32>>>,
    /// Feature vectors per input when the work asked for them, else empty.
    pub features: Vec<Vec<f32>>,
}

/// An answer plus where the time went.
#[derive(Debug)]
pub struct Timed<T> {
    /// The answer.
    pub answer: T,
    /// Time spent waiting in the queue.
    pub queued: Duration,
    /// Time spent computing this job (its batch, for a classify job).
    pub inference: Duration,
}

/// Why the engine gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The queue is full: the job is refused at once rather than made to wait.
    #[error("the inference queue is full")]
    QueueFull,
    /// The engine thread has ended, so nothing more is queued.
    #[error("the inference engine has stopped")]
    Stopped,
    /// The engine ended with the job still in hand.
    #[error("the inference engine dropped the request")]
    Dropped,
    /// The model failed on the job's rows.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// What a job sends back to whoever queued it.
type Reply<A> = Result<Timed<A>, EngineError>;

/// The answer to a queued job; awaiting it yields the answer, or
/// [`EngineError::Dropped`] if the engine ends without giving one.
#[derive(Debug)]
#[must_use = "the job's answer is only had by awaiting it"]
pub struct Pending<A>(oneshot::Receiver<Reply<A>>);

impl<A> Future for Pending<A> {
    type Output = Reply<A>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply<A>> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|reply| reply.unwrap_or(Err(EngineError::Dropped)))
    }
}

/// A unit of work with its reply channel.
pub(in crate::serve) struct Job<W, A> {
    /// What to compute.
    pub(in crate::serve) work: W,
    reply: oneshot::Sender<Reply<A>>,
    /// When it was queued.
    enqueued: Instant,
}

impl<W, A> Job<W, A> {
    /// A job of `work`, queued now, and the answer to await.
    pub(super) fn new(work: W) -> (Self, Pending<A>) {
        let (reply, receiver) = oneshot::channel();
        let job = Self {
            work,
            reply,
            enqueued: Instant::now(),
        };
        (job, Pending(receiver))
    }

    /// True once the client has stopped waiting (timed out or disconnected).
    pub(in crate::serve) fn is_abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    /// Sends `answer`, computed from `began` for `inference`.
    pub(in crate::serve) fn answer(self, answer: A, began: Instant, inference: Duration) {
        let timed = Timed {
            answer,
            queued: began.saturating_duration_since(self.enqueued),
            inference,
        };
        // A client that has gone is not waiting for it.
        let _ = self.reply.send(Ok(timed));
    }

    /// Sends why the job failed.
    pub(in crate::serve) fn fail(self, error: EngineError) {
        let _ = self.reply.send(Err(error));
    }
}

/// A classify job.
pub(super) type ClassifyJob = Job<ClassifyWork, Classified>;

/// A sampling job.
pub(in crate::serve) type SamplingJob = Job<SampleWork, Sampled>;

/// A job of either kind as it waits in the queue.
pub(super) enum Queued {
    /// Deterministic logits, answered between any two sampling passes.
    Classify(ClassifyJob),
    /// MC-dropout samples, run a pass at a time (see [`crate::serve::schedule`]).
    Sample(SamplingJob),
}

impl Queued {
    /// Rows (inputs, or inputs × samples) and tokens the job adds to a batch.
    pub(super) fn size(&self) -> (usize, usize) {
        match self {
            Queued::Classify(job) => (job.work.rows.len(), token_count(&job.work.rows)),
            Queued::Sample(job) => {
                let samples = job.work.samples;
                (
                    job.work.rows.len() * samples,
                    token_count(&job.work.rows) * samples,
                )
            }
        }
    }
}

/// Splits jobs by kind, leaving out those whose client has gone.
pub(super) fn by_kind(jobs: Vec<Queued>) -> (Vec<ClassifyJob>, Vec<SamplingJob>) {
    let (mut classify, mut sample) = (Vec::new(), Vec::new());
    for job in jobs {
        match job {
            Queued::Classify(job) if !job.is_abandoned() => classify.push(job),
            Queued::Sample(job) if !job.is_abandoned() => sample.push(job),
            _ => {}
        }
    }
    (classify, sample)
}
