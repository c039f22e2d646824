//! The HTTP service, started for real on 127.0.0.1:0 with a small fixture model.

mod classify;
#[path = "../common/mod.rs"]
mod common;
mod compat;
mod database;
mod decisions;
mod durability;
mod errors;
mod helpers;
mod load;
mod operations;
mod persistence;
mod prediction_log;
mod properties;
mod review_queue;
