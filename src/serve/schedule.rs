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

use super::engine::{Sampled, SamplingJob, Worker};
use crate::model::ModelError;
use crate::uncertainty::InputSampling;

/// A sampling job part-way through its inputs.
struct SamplingTask {
    job: SamplingJob,
    /// The next input to compute.
    next: usize,
    /// The passes of input `next`, once started.
    current: Option<InputSampling>,
    /// The answer so far: the computed inputs' probabilities (and feature
    /// vectors, when the job asks for them).
    sampled: Sampled,
    /// When its first input was started.
    began: Option<Instant>,
    /// Time spent computing its inputs.
    computing: Duration,
}

impl SamplingTask {
    fn new(job: SamplingJob) -> Self {
        Self {
            job,
            next: 0,
            current: None,
            sampled: Sampled::default(),
            began: None,
            computing: Duration::ZERO,
        }
    }

    /// Runs the next pass of the current input; the result is `Err` when
    /// the job failed.
    fn advance(&mut self, worker: &Worker) -> Result<(), ModelError> {
        let started = Instant::now();
        self.began.get_or_insert(started);
        let work = &self.job.work;
        let next = self.current.take().or_else(|| {
            let row = work.rows.get(self.next)?;
            Some(worker.start_input(work, row))
        });
        let Some(mut current) = next else {
            // Every input is done: nothing to run.
            return Ok(());
        };
        worker.run_pass(&mut current)?;
        if current.is_done() {
            let (probabilities, features) = current.finish();
            self.sampled.probabilities.push(probabilities);
            if work.features {
                self.sampled.features.push(features);
            }
            self.next += 1;
        } else {
            self.current = Some(current);
        }
        self.computing += started.elapsed();
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.next >= self.job.work.rows.len()
    }

    fn answer(self) {
        let began = self.began.unwrap_or_else(Instant::now);
        self.job.answer(self.sampled, began, self.computing);
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
    pub(super) fn extend(&mut self, jobs: Vec<SamplingJob>) {
        self.tasks.extend(jobs.into_iter().map(SamplingTask::new));
    }

    /// Runs one pass of the job at the front, then moves it to the back
    /// (or answers it when it is complete). A job whose client has gone
    /// (timed out or disconnected) is dropped without more work.
    pub(super) fn step(&mut self, worker: &Worker) {
        let Some(mut task) = self.tasks.pop_front() else {
            return;
        };
        if task.job.is_abandoned() {
            return;
        }
        if let Err(e) = task.advance(worker) {
            task.job.fail(e.into());
            return;
        }
        if task.is_done() {
            task.answer();
        } else {
            self.tasks.push_back(task);
        }
    }
}
