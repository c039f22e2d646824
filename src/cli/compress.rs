//! Options of `candor compress` and running it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::FieldArgs;
use crate::compress::{compress, CompressSettings, LayerChoice};
use crate::data::{self, read_texts};

/// Options of `candor compress`.
#[derive(Debug, Args)]
pub struct CompressArgs {
    /// Fine-tuned model directory to compress.
    #[arg(long, env = "CANDOR_MODEL")]
    pub model: PathBuf,
    /// Directory to write the compressed model to (it must not exist, unless --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Labelled data whose texts decide which word pieces to keep (usually
    /// the training data); without it the vocabulary is kept whole.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub fields: FieldArgs,
    /// More texts whose word pieces are kept, labels ignored (repeatable): a
    /// general sample of the language keeps words the training texts lack.
    #[arg(long, requires = "data")]
    pub keep_texts: Vec<PathBuf>,
    /// Texts the pruning does not see (e.g. a validation split), to report
    /// how many more [UNK]s and word pieces per text pruning costs.
    #[arg(long, requires = "data")]
    pub held_out: Option<PathBuf>,
    /// Keep this many encoder layers, evenly spaced, the last always among
    /// them; then distil the full model into the result with
    /// `candor train --init-from OUT --teacher MODEL`.
    #[arg(long, conflicts_with = "keep_layers")]
    pub layers: Option<usize>,
    /// Keep exactly these encoder layers (0-based, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub keep_layers: Option<Vec<usize>>,
    /// Keep this many feed-forward neurons in each layer (of
    /// `intermediate_size`), those with the largest weights in and out;
    /// then distil the full model into the result as for --layers.
    #[arg(long)]
    pub intermediate: Option<usize>,
    /// Store the weights as f16 (half the size; computed in f32 at load).
    #[arg(long)]
    pub f16: bool,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Reads the texts, compresses, and prints what was done.
pub(super) fn run_compress(args: &CompressArgs) -> anyhow::Result<()> {
    let (prune_to, data_labels) = match &args.data {
        Some(path) => {
            let examples = data::read_examples(path, &args.fields.names())
                .with_context(|| format!("reading {}", path.display()))?;
            let labels = examples.iter().map(|e| e.label.clone()).collect();
            let texts: Vec<String> = examples.into_iter().map(|e| e.text).collect();
            (Some(texts), labels)
        }
        None => (None, Vec::new()),
    };
    let prune_to = match prune_to {
        Some(mut texts) => {
            for path in &args.keep_texts {
                texts.extend(
                    read_texts(path, &args.fields.text_field)
                        .with_context(|| format!("reading {}", path.display()))?,
                );
            }
            Some(texts)
        }
        None => None,
    };
    let held_out = match &args.held_out {
        Some(path) => Some(
            read_texts(path, &args.fields.text_field)
                .with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let layers = match (&args.layers, &args.keep_layers) {
        (Some(k), _) => LayerChoice::Count(*k),
        (None, Some(indices)) => LayerChoice::Indices(indices.clone()),
        (None, None) => LayerChoice::All,
    };
    let settings = CompressSettings {
        prune_to,
        held_out,
        data_labels,
        layers,
        intermediate: args.intermediate,
        half: args.f16,
        force: args.force,
    };
    let report = compress(&args.model, &args.out, &settings)
        .with_context(|| format!("compressing {}", args.model.display()))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
