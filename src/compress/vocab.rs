//! Vocabulary pruning: keep the word pieces some texts use, plus every
//! single-character piece and the special tokens, and drop the other rows
//! of the embedding table.
//!
//! WordPiece splits a word greedily, longest known piece first. Every piece
//! the kept texts were split into is still known, and no longer piece is
//! newly known, so those texts split exactly as before and the model sees
//! the same embeddings: its outputs on them do not change. A word made of
//! dropped pieces falls back to shorter ones, down to single characters,
//! which are all kept; only a character the original vocabulary lacked
//! becomes `[UNK]`, as before.

use std::collections::{BTreeSet, HashMap};

use candle_core::{Device, Tensor};
use serde_json::Value;
use tokenizers::Tokenizer;

use super::CompressError;

/// The embedding table's name in a `BertForSequenceClassification` checkpoint.
pub const WORD_EMBEDDINGS: &str = "bert.embeddings.word_embeddings.weight";

/// Which ids survive and where they go.
#[derive(Debug, Clone)]
pub struct VocabPlan {
    /// Kept old ids, ascending; a kept id's new id is its position here.
    pub kept: Vec<u32>,
    new_of_old: HashMap<u32, u32>,
}

impl VocabPlan {
    /// Keeps what `texts` are split into, the special tokens and every
    /// single-character piece (with and without the continuation prefix).
    pub fn for_texts(tokenizer: &Tokenizer, texts: &[String]) -> Result<Self, CompressError> {
        let mut kept = BTreeSet::new();
        for text in texts {
            let encoding = tokenizer.encode(text.as_str(), true).map_err(library)?;
            kept.extend(encoding.get_ids().iter().copied());
        }
        let prefix = continuing_prefix(tokenizer);
        for (piece, id) in tokenizer.get_vocab(true) {
            let bare = piece.strip_prefix(prefix.as_str()).unwrap_or(&piece);
            if bare.chars().count() == 1 {
                kept.insert(id);
            }
        }
        kept.extend(tokenizer.get_added_tokens_decoder().keys().copied());
        let kept: Vec<u32> = kept.into_iter().collect();
        let new_of_old = kept
            .iter()
            .enumerate()
            .map(|(new, &old)| (old, new as u32))
            .collect();
        Ok(Self { kept, new_of_old })
    }

    /// Where `old` goes, if it is kept.
    pub fn new_id(&self, old: u32) -> Option<u32> {
        self.new_of_old.get(&old).copied()
    }

    /// Rewrites a `tokenizer.json` for the kept ids: the vocabulary, the
    /// added tokens, the post-processor's special-token ids and the padding id.
    pub fn rewrite_tokenizer(&self, json: &mut Value) -> Result<(), CompressError> {
        let remap = |old: &Value| -> Result<Value, CompressError> {
            let old = old
                .as_u64()
                .ok_or_else(|| malformed("an id is not a number"))? as u32;
            self.new_id(old)
                .map(Value::from)
                .ok_or_else(|| malformed(&format!("special id {old} is not kept")))
        };
        let vocab = json
            .pointer_mut("/model/vocab")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| malformed("tokenizer.json has no WordPiece model.vocab"))?;
        let pruned: serde_json::Map<String, Value> = vocab
            .iter()
            .filter_map(|(piece, id)| {
                let new = self.new_id(id.as_u64()? as u32)?;
                Some((piece.clone(), Value::from(new)))
            })
            .collect();
        *vocab = pruned;
        if let Some(added) = json.get_mut("added_tokens").and_then(Value::as_array_mut) {
            for token in added {
                token["id"] = remap(&token["id"])?;
            }
        }
        if let Some(special) = json
            .pointer_mut("/post_processor/special_tokens")
            .and_then(Value::as_object_mut)
        {
            for token in special.values_mut() {
                if let Some(ids) = token.get_mut("ids").and_then(Value::as_array_mut) {
                    for id in ids {
                        *id = remap(id)?;
                    }
                }
            }
        }
        for key in ["cls", "sep"] {
            // BertProcessing writes ["[CLS]", 101].
            if let Some(pair) = json.pointer_mut(&format!("/post_processor/{key}/1")) {
                *pair = remap(pair)?;
            }
        }
        if let Some(pad) = json.pointer_mut("/padding/pad_id") {
            *pad = remap(pad)?;
        }
        Ok(())
    }

    /// The embedding rows of the kept ids, in their new order.
    pub fn prune_embeddings(&self, table: &Tensor) -> Result<Tensor, CompressError> {
        let index = Tensor::new(self.kept.as_slice(), &Device::Cpu)?;
        Ok(table.index_select(&index, 0)?)
    }
}

/// What pruning costs on texts it did not see.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PruningCost {
    /// Texts measured.
    pub texts: usize,
    /// `[UNK]` pieces per text before and after.
    pub unknown_per_text: [f64; 2],
    /// Word pieces per text before and after.
    pub pieces_per_text: [f64; 2],
}

/// Splits `texts` with both tokenizers and compares.
pub fn pruning_cost(
    before: &Tokenizer,
    after: &Tokenizer,
    texts: &[String],
) -> Result<PruningCost, CompressError> {
    let count = |tokenizer: &Tokenizer| -> Result<(f64, f64), CompressError> {
        let unknown = unknown_id(tokenizer);
        let (mut unk, mut pieces) = (0usize, 0usize);
        for text in texts {
            let ids = tokenizer.encode(text.as_str(), false).map_err(library)?;
            pieces += ids.get_ids().len();
            unk += ids
                .get_ids()
                .iter()
                .filter(|&&id| Some(id) == unknown)
                .count();
        }
        let n = texts.len().max(1) as f64;
        Ok((unk as f64 / n, pieces as f64 / n))
    };
    let (unk_before, pieces_before) = count(before)?;
    let (unk_after, pieces_after) = count(after)?;
    Ok(PruningCost {
        texts: texts.len(),
        unknown_per_text: [unk_before, unk_after],
        pieces_per_text: [pieces_before, pieces_after],
    })
}

fn unknown_id(tokenizer: &Tokenizer) -> Option<u32> {
    tokenizer.token_to_id("[UNK]")
}

fn continuing_prefix(tokenizer: &Tokenizer) -> String {
    serde_json::to_value(tokenizer.get_model())
        .ok()
        .and_then(|m| m["continuing_subword_prefix"].as_str().map(str::to_string))
        .unwrap_or_else(|| "##".into())
}

fn malformed(message: &str) -> CompressError {
    CompressError::Tokenizer(message.to_string())
}

fn library(e: tokenizers::Error) -> CompressError {
    CompressError::Tokenizer(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn fixture_tokenizer() -> (Tokenizer, Value) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tiny-trec6/tokenizer.json");
        let text = std::fs::read_to_string(path).unwrap();
        (
            Tokenizer::from_str(&text).unwrap(),
            serde_json::from_str(&text).unwrap(),
        )
    }

    #[test]
    fn kept_texts_split_into_the_same_pieces_under_their_new_ids() {
        let (tokenizer, mut json) = fixture_tokenizer();
        let texts = vec![
            "What is the capital of France ?".to_string(),
            "Who wrote Hamlet ?".into(),
        ];
        let plan = VocabPlan::for_texts(&tokenizer, &texts).unwrap();
        assert!(plan.kept.len() < tokenizer.get_vocab_size(true));
        plan.rewrite_tokenizer(&mut json).unwrap();
        let pruned = Tokenizer::from_str(&json.to_string()).unwrap();
        assert_eq!(pruned.get_vocab_size(true), plan.kept.len());
        for text in &texts {
            let before = tokenizer.encode(text.as_str(), true).unwrap();
            let after = pruned.encode(text.as_str(), true).unwrap();
            let remapped: Vec<u32> = before
                .get_ids()
                .iter()
                .map(|&id| plan.new_id(id).unwrap())
                .collect();
            assert_eq!(after.get_ids(), remapped.as_slice(), "{text}");
            assert_eq!(after.get_tokens(), before.get_tokens(), "{text}");
        }
    }

    #[test]
    fn an_unseen_word_falls_back_to_smaller_pieces_not_to_unknown() {
        let (tokenizer, mut json) = fixture_tokenizer();
        let plan = VocabPlan::for_texts(&tokenizer, &["Who ?".to_string()]).unwrap();
        plan.rewrite_tokenizer(&mut json).unwrap();
        let pruned = Tokenizer::from_str(&json.to_string()).unwrap();
        let text = vec!["What is the capital of France ?".to_string()];
        let cost = pruning_cost(&tokenizer, &pruned, &text).unwrap();
        assert_eq!(cost.unknown_per_text[1], cost.unknown_per_text[0]);
        assert!(
            cost.pieces_per_text[1] > cost.pieces_per_text[0],
            "{cost:?}"
        );
    }
}
