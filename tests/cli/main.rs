//! The `candor` binary end to end: train on a small subset, then eval,
//! predict and calibrate on what it wrote; and the errors a user meets with
//! bad data or options. Tests that only read a trained model share one,
//! trained the first time a test asks for it ([`helpers::tiny_model`]).

mod calibration;
#[path = "../common/mod.rs"]
mod common;
mod distillation;
mod evaluation;
mod feedback;
mod fine_tuning;
mod helpers;
mod prediction;
mod training;
mod training_errors;
