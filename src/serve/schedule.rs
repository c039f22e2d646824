//! Fair sharing of the engine between sampling jobs.
//!
//! An uncertainty request of 64 long inputs × 100 samples is seconds of
//! work. Run to completion, it would hold the only inference thread while
//! every request behind it waits. Instead the engine keeps the sampling jobs
//! in progress in a [`SamplingQueue`] and runs one forward pass of one job
//! per step, round-robin; between two steps it answers every classify job
//! that has arrived. Each input is computed exactly as before (the same
//! passes, the same dropout keys, in the same order), so interleaving changes
//! when an answer comes, never what it is.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::engine::{Answer, Job, Output, Work, Worker};
use crate::uncertainty::InputSampling;

/// A sampling job part-way through its inputs.
struct SamplingTask {
    job: Job,
    /// The next input to compute.
    next: usize,
    /// The passes of input `next`, once started.
    current: Option<InputSampling>,
    /// Probabilities per computed input per sample.
    samples: Vec<Vec<Vec<f32>>>,
    /// Mean last hidden states of computed inputs, when the job asks for them.
    features: Vec<Vec<f32>>,
    /// When its first input was started.
    began: Option<Instant>,
    /// Time spent computing its inputs.
    computing: Duration,
}

impl SamplingTask {
    fn new(job: Job) -> Self {
        Self {
            job,
            next: 0,
            current: None,
            samples: Vec::new(),
            features: Vec::new(),
            began: None,
            computing: Duration::ZERO,
        }
    }

    fn inputs(&self) -> usize {
        match &self.job.work {
            Work::Sample { rows, .. } => rows.len(),
            Work::Classify { .. } => 0,
        }
    }

    /// Runs the next pass of the current input; the result is `Err` when
    /// the job failed.
    fn advance(&mut self, worker: &Worker) -> Result<(), String> {
        let started = Instant::now();
        self.began.get_or_insert(started);
        let mut current = match self.current.take() {
            Some(current) => current,
            None => worker.start_input(&self.job.work, self.next)?,
        };
        worker.run_pass(&mut current)?;
        if current.is_done() {
            let (probabilities, mean) = current.finish();
            self.samples.push(probabilities);
            if matches!(self.job.work, Work::Sample { features: true, .. }) {
                self.features.push(mean);
            }
            self.next += 1;
        } else {
            self.current = Some(current);
        }
        self.computing += started.elapsed();
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.next >= self.inputs()
    }

    fn answer(self) {
        let began = self.began.unwrap_or_else(Instant::now);
        let answer = Answer {
            output: Output::Samples(self.samples, self.features),
            queued: began.saturating_duration_since(self.job.enqueued),
            inference: self.computing,
        };
        let _ = self.job.reply.send(Ok(answer));
    }
}

/// Sampling jobs in progress, served one input at a time, round-robin.
#[derive(Default)]
pub(super) struct SamplingQueue {
    tasks: VecDeque<SamplingTask>,
}

impl SamplingQueue {
    /// True when no sampling job is in progress.
    pub(super) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Adds newly arrived sampling jobs at the back.
    pub(super) fn extend(&mut self, jobs: Vec<Job>) {
        self.tasks.extend(jobs.into_iter().map(SamplingTask::new));
    }

    /// Runs one pass of the job at the front, then moves it to the back
    /// (or answers it when it is complete). A job whose client has gone
    /// (timed out or disconnected) is dropped without more work.
    pub(super) fn step(&mut self, worker: &Worker) {
        let Some(mut task) = self.tasks.pop_front() else {
            return;
        };
        if task.job.reply.is_closed() {
            return;
        }
        if let Err(e) = task.advance(worker) {
            let _ = task.job.reply.send(Err(e));
            return;
        }
        if task.is_done() {
            task.answer();
        } else {
            self.tasks.push_back(task);
        }
    }
}
