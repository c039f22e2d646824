//! The WordPiece tokenizer: trained on the training split, saved as a standard
//! `tokenizer.json`, and used to turn texts into `[CLS] … [SEP]` id rows.

use std::path::Path;

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, Model, ModelWrapper, NormalizedString, Normalizer, OffsetReferential, OffsetType,
    PreTokenizedString, PreTokenizer, Tokenizer,
};

use super::wordpiece::learn_vocabulary;

/// The special tokens, in the order that gives them ids 0–4.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Why tokenizing or training the tokenizer failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The tokenizers library reported an error.
    #[error("tokenizer: {0}")]
    Library(String),
    /// A required special token is absent from the vocabulary.
    #[error("tokenizer has no '{0}' token")]
    MissingToken(&'static str),
    /// The input is longer than the model accepts and truncation was refused.
    #[error("input has {tokens} tokens, more than the model's maximum of {max}")]
    TooLong {
        /// Tokens the input needs, `[CLS]` and `[SEP]` included.
        tokens: usize,
        /// The model's maximum length.
        max: usize,
    },
}

fn library(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Library(e.to_string())
}

/// What to do with a text longer than the model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Refuse it.
    Refuse,
    /// Keep its first pieces (candor's default; `truncation_direction: Right` in TEI).
    KeepStart,
    /// Keep its last pieces (`truncation_direction: Left` in TEI).
    KeepEnd,
}

impl From<bool> for Truncation {
    /// `true`: keep the start; `false`: refuse.
    fn from(truncate: bool) -> Self {
        if truncate {
            Truncation::KeepStart
        } else {
            Truncation::Refuse
        }
    }
}

/// A tokenized text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, starting with `[CLS]` and ending with `[SEP]`.
    pub ids: Vec<u32>,
    /// True when the text was cut to the maximum length.
    pub truncated: bool,
}

/// A tokenizer plus the model's length limit.
#[derive(Clone)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    max_length: usize,
    pad_id: u32,
    sep_id: u32,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("vocab_size", &self.vocab_size())
            .field("max_length", &self.max_length)
            .finish()
    }
}

impl TextEncoder {
    /// Trains a BERT-style WordPiece tokenizer on `texts`, deterministically.
    pub fn train(
        texts: &[String],
        vocab_size: usize,
        max_length: usize,
    ) -> Result<Self, TokenizerError> {
        let normalizer = BertNormalizer::new(true, true, None, true);
        let mut words = std::collections::BTreeMap::<String, u64>::new();
        for text in texts {
            let mut normalized = NormalizedString::from(text.as_str());
            normalizer.normalize(&mut normalized).map_err(library)?;
            let mut split = PreTokenizedString::from(normalized);
            BertPreTokenizer.pre_tokenize(&mut split).map_err(library)?;
            for (word, _, _) in split.get_splits(OffsetReferential::Original, OffsetType::Char) {
                *words.entry(word.to_string()).or_default() += 1;
            }
        }
        let vocabulary = learn_vocabulary(&words, &SPECIAL_TOKENS, vocab_size, 2);
        let vocab: ahash::AHashMap<String, u32> = vocabulary
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        let model = WordPiece::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .continuing_subword_prefix("##".into())
            .build()
            .map_err(library)?;
        let mut tokenizer = Tokenizer::new(ModelWrapper::WordPiece(model));
        tokenizer
            .with_normalizer(Some(normalizer))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_decoder(Some(WordPieceDecoder::default()));
        let specials: Vec<AddedToken> = SPECIAL_TOKENS
            .iter()
            .map(|t| AddedToken::from(*t, true))
            .collect();
        tokenizer.add_special_tokens(&specials);
        let id = |t: &'static str| {
            tokenizer
                .token_to_id(t)
                .ok_or(TokenizerError::MissingToken(t))
        };
        let template = TemplateProcessing::builder()
            .try_single("[CLS] $A [SEP]")
            .map_err(library)?
            .try_pair("[CLS] $A [SEP] $B:1 [SEP]:1")
            .map_err(library)?
            .special_tokens(vec![("[CLS]", id("[CLS]")?), ("[SEP]", id("[SEP]")?)])
            .build()
            .map_err(library)?;
        tokenizer.with_post_processor(Some(template));
        Self::from_tokenizer(tokenizer, max_length)
    }

    /// Loads a `tokenizer.json`, whichever model wrote it.
    pub fn load(path: &Path, max_length: usize) -> Result<Self, TokenizerError> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::Library(format!("{}: {e}", path.display())))?;
        Self::from_tokenizer(tokenizer, max_length)
    }

    fn from_tokenizer(mut tokenizer: Tokenizer, max_length: usize) -> Result<Self, TokenizerError> {
        // candor pads per batch and truncates itself, so that it knows when a text was cut.
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(library)?;
        let pad_id = tokenizer
            .token_to_id("[PAD]")
            .ok_or(TokenizerError::MissingToken("[PAD]"))?;
        let sep_id = tokenizer
            .token_to_id("[SEP]")
            .ok_or(TokenizerError::MissingToken("[SEP]"))?;
        Ok(Self {
            tokenizer,
            max_length,
            pad_id,
            sep_id,
        })
    }

    /// Writes the standard `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<(), TokenizerError> {
        self.tokenizer.save(path, true).map_err(library)
    }

    /// Tokenizes one text; an over-long text is cut as `truncation` says
    /// (keeping `[CLS]` and `[SEP]`) or refused.
    pub fn encode(
        &self,
        text: &str,
        truncation: impl Into<Truncation>,
    ) -> Result<Encoded, TokenizerError> {
        let encoding = self.tokenizer.encode(text, true).map_err(library)?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.len() <= self.max_length {
            return Ok(Encoded {
                ids,
                truncated: false,
            });
        }
        match truncation.into() {
            Truncation::Refuse => {
                return Err(TokenizerError::TooLong {
                    tokens: ids.len(),
                    max: self.max_length,
                })
            }
            Truncation::KeepStart => {
                ids.truncate(self.max_length - 1);
                ids.push(self.sep_id);
            }
            Truncation::KeepEnd => {
                // [CLS], then the last pieces before [SEP], then [SEP].
                let cut = ids.len() - self.max_length;
                ids.drain(1..=cut);
            }
        }
        Ok(Encoded {
            ids,
            truncated: true,
        })
    }

    /// Tokenizes many texts, truncating over-long ones.
    pub fn encode_all(&self, texts: &[String]) -> Result<Vec<Vec<u32>>, TokenizerError> {
        texts
            .iter()
            .map(|t| self.encode(t, true).map(|e| e.ids))
            .collect()
    }

    /// The word pieces of a text, for people reading what the model sees.
    pub fn tokens(&self, text: &str) -> Result<Vec<String>, TokenizerError> {
        let encoding = self.tokenizer.encode(text, true).map_err(library)?;
        Ok(encoding.get_tokens().to_vec())
    }

    /// Turns ids back into text.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.tokenizer.decode(ids, true).map_err(library)
    }

    /// Size of the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_model().get_vocab_size()
    }

    /// One more than the largest id the tokenizer can produce (added tokens
    /// included): the embedding table must have at least this many rows.
    pub fn id_bound(&self) -> usize {
        self.tokenizer
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&id| id as usize + 1)
    }

    /// The id of `[MASK]`, if the vocabulary has one.
    pub fn mask_id(&self) -> Option<u32> {
        self.tokenizer.token_to_id("[MASK]")
    }

    /// The id of `[PAD]`.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The longest id row `encode` returns.
    pub fn max_length(&self) -> usize {
        self.max_length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let base = [
            "a warm, funny, sharply written film",
            "a dull and lifeless film",
            "the acting is wonderful and the story is warm",
            "the story is dull and the acting is flat",
            "Café crème is déjà vu",
        ];
        (0..20)
            .flat_map(|_| base.iter().map(|s| s.to_string()))
            .collect()
    }

    #[test]
    fn a_trained_tokenizer_has_the_bert_specials_first_and_wraps_texts_in_cls_and_sep() {
        let encoder = TextEncoder::train(&corpus(), 200, 32).unwrap();
        for (i, token) in SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(encoder.tokenizer.token_to_id(token), Some(i as u32));
        }
        let tokens = encoder.tokens("A warm film").unwrap();
        assert_eq!(tokens, vec!["[CLS]", "a", "warm", "film", "[SEP]"]);
    }

    #[test]
    fn training_twice_on_the_same_texts_gives_the_same_tokenizer() {
        let dir = tempfile::tempdir().unwrap();
        let texts: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    "sample text {} with words like film{} and fun",
                    i % 17,
                    i % 5
                )
            })
            .collect();
        for i in 0..3 {
            TextEncoder::train(&texts, 120, 32)
                .unwrap()
                .save(&dir.path().join(format!("{i}.json")))
                .unwrap();
        }
        let read =
            |i: usize| std::fs::read_to_string(dir.path().join(format!("{i}.json"))).unwrap();
        assert_eq!(read(0), read(1));
        assert_eq!(read(0), read(2));
    }

    #[test]
    fn text_is_lower_cased_and_accents_are_stripped() {
        let encoder = TextEncoder::train(&corpus(), 200, 32).unwrap();
        assert_eq!(
            encoder.encode("CAFE creme", true).unwrap(),
            encoder.encode("café crème", true).unwrap()
        );
    }

    #[test]
    fn a_saved_tokenizer_loads_and_encodes_identically() {
        let encoder = TextEncoder::train(&corpus(), 200, 32).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        encoder.save(&path).unwrap();
        let loaded = TextEncoder::load(&path, 32).unwrap();
        let text = "the acting is warm but the film is dull; zebra!";
        assert_eq!(
            encoder.encode(text, true).unwrap(),
            loaded.encode(text, true).unwrap()
        );
        assert_eq!(
            loaded
                .decode(&loaded.encode("a dull film", true).unwrap().ids)
                .unwrap(),
            "a dull film"
        );
    }

    #[test]
    fn long_texts_are_truncated_to_the_maximum_or_rejected() {
        let encoder = TextEncoder::train(&corpus(), 200, 6).unwrap();
        let text = "the story is dull and the acting is flat";
        let cut = encoder.encode(text, true).unwrap();
        assert!(cut.truncated);
        assert_eq!(cut.ids.len(), 6);
        assert_eq!(*cut.ids.last().unwrap(), encoder.sep_id);
        assert!(matches!(
            encoder.encode(text, false),
            Err(TokenizerError::TooLong { max: 6, .. })
        ));
    }

    #[test]
    fn keeping_the_end_keeps_cls_the_last_pieces_and_sep() {
        let encoder = TextEncoder::train(&corpus(), 200, 6).unwrap();
        let text = "the story is dull and the acting is flat";
        let whole = encoder.encode(text, Truncation::Refuse);
        assert!(whole.is_err());
        let all = TextEncoder::train(&corpus(), 200, 64).unwrap();
        let full = all.encode(text, Truncation::Refuse).unwrap().ids;
        let end = encoder.encode(text, Truncation::KeepEnd).unwrap();
        assert!(end.truncated);
        assert_eq!(end.ids[0], full[0]);
        assert_eq!(end.ids[1..], full[full.len() - 5..]);
        let start = encoder.encode(text, Truncation::KeepStart).unwrap().ids;
        assert_eq!(start[..5], full[..5]);
        assert_eq!(start[5], encoder.sep_id);
    }

    #[test]
    fn unknown_words_become_unk_rather_than_failing() {
        let encoder = TextEncoder::train(&corpus(), 200, 32).unwrap();
        let ids = encoder.encode("€€€ 漢字", true).unwrap().ids;
        assert!(ids.contains(&1), "{ids:?}");
    }
}
