//! candor: text classification that knows when it does not know.
//!
//! A tour of the modules:
//! - [`data`] reads labelled files (JSONL, CSV, TSV), validates them and makes
//!   seeded, stratified, duplicate-safe splits.
//! - [`model`] is the BERT encoder with real, seedable dropout, its Hugging Face
//!   config and tokenizer, and loading/saving a model directory (whose
//!   files and name `model::ModelDir` owns); `model::packed`
//!   holds the AVX-512 dense kernels (f32, bf16, int8). It knows nothing of
//!   HTTP or databases.
//! - [`train`] is the offline training loop: AdamW with warm-up and decay,
//!   clipping, early stopping, temperature fitting and the artifacts written
//!   beside the model.
//! - [`compress`] makes a fine-tuned model smaller in the same format:
//!   vocabulary pruning, fewer layers, narrower feed-forward layers, f16
//!   storage.
//! - [`uncertainty`] turns Monte-Carlo dropout samples into summaries,
//!   measures calibration and fits cascades' hand-over thresholds; its
//!   `Predictor` names the predictors evaluation and training report on.
//! - [`charts`] draws the PNG pictures (training curves, reliability diagram).
//! - [`rng`] is the seeded generator behind every random choice.
//! - [`serve`] is the HTTP service: axum routes over one inference thread
//!   per model with dynamic batching, MC-dropout uncertainty, reload,
//!   cascades, KServe's v2 protocol and Prometheus metrics; `serve::engine`
//!   owns the inference thread, and `serve::engine::work` the typed work,
//!   answers and errors that cross to it; `serve::api`
//!   holds the bodies (the contract) and `serve::schema` what the OpenAPI
//!   document states beyond the derives.
//! - [`store`] keeps the models served, every logged prediction and human
//!   feedback in SQLite or PostgreSQL, written off the request path: the
//!   dialects, the records, inserting predictions, feedback and its figures,
//!   the review queue and the log writer each in their own file.
//! - [`cli`] holds the command-line options of the `candor` binary, one file
//!   per group of commands (training, split and predict, evaluation and
//!   calibration, compression, serving, the database commands).

pub mod charts;
pub mod cli;
pub mod compress;
pub mod data;
pub mod model;
pub mod rng;
pub mod serve;
pub mod store;
pub mod train;
pub mod uncertainty;
