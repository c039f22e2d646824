//! The HTTP service, started for real on 127.0.0.1:0 with a small fixture model.

mod browser;
mod cascade;
mod classify;
#[path = "../common/mod.rs"]
mod common;
mod compat;
mod connections;
mod contract;
mod database;
mod decisions;
mod durability;
mod edge;
mod errors;
mod helpers;
mod kserve;
mod limits;
mod load;
mod models;
mod operations;
mod persistence;
mod playground;
mod precision;
mod prediction_log;
mod properties;
mod reload;
mod review_queue;
mod sampling_modes;
mod startup;
