//! Learning a WordPiece vocabulary, deterministically.
//!
//! The `tokenizers` crate's trainer walks hash maps with a per-process random
//! seed, so the same texts give a slightly different vocabulary on every run,
//! and with it a different model: training would not be reproducible. This is
//! the same algorithm (BPE-style merges of the most frequent adjacent pair, with
//! `##` marking pieces that continue a word), with ties broken by token ids that
//! are themselves assigned in a fixed order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

/// Marks a piece that continues a word.
const CONTINUATION: &str = "##";

/// A word as a sequence of token ids, with its frequency.
struct Word {
    symbols: Vec<u32>,
    count: i64,
}

/// The vocabulary, in id order: `specials`, then every character (word-initial
/// and `##`-continuing, by code point), then merged pieces in merge order, up to
/// `vocab_size` entries. Merges stop when the best pair occurs fewer than
/// `min_frequency` times.
pub fn learn_vocabulary(
    words: &BTreeMap<String, u64>,
    specials: &[&str],
    vocab_size: usize,
    min_frequency: u64,
) -> Vec<String> {
    let mut vocabulary = Vocabulary::with_specials(specials);
    vocabulary.add_characters(words);
    let mut corpus = vocabulary.spell(words);
    let mut pairs = PairIndex::new(&corpus);
    while vocabulary.tokens.len() < vocab_size {
        let Some((pair, count)) = pairs.most_frequent() else {
            break;
        };
        if count < min_frequency as i64 || count <= 0 {
            break;
        }
        let new_id = vocabulary.add(vocabulary.merged(pair));
        pairs.merge(&mut corpus, pair, new_id);
    }
    vocabulary.tokens
}

/// The tokens learnt so far and the id of each.
struct Vocabulary {
    /// Tokens in id order.
    tokens: Vec<String>,
    /// The id of each token.
    ids: HashMap<String, u32>,
}

impl Vocabulary {
    /// The special tokens, in the order given, as ids 0, 1, ….
    fn with_specials(specials: &[&str]) -> Self {
        let tokens: Vec<String> = specials.iter().map(|s| s.to_string()).collect();
        let mut ids = HashMap::new();
        for (i, s) in specials.iter().enumerate() {
            ids.insert(s.to_string(), i as u32);
        }
        Self { tokens, ids }
    }

    /// The id of `token`, added at the end when it is new.
    fn add(&mut self, token: String) -> u32 {
        if let Some(&id) = self.ids.get(&token) {
            return id;
        }
        self.tokens.push(token.clone());
        self.ids.insert(token, self.tokens.len() as u32 - 1);
        self.tokens.len() as u32 - 1
    }

    /// Every character that begins a word, then every one that continues
    /// one (as `##c`), each by code point.
    fn add_characters(&mut self, words: &BTreeMap<String, u64>) {
        let mut initial = BTreeSet::new();
        let mut continuing = BTreeSet::new();
        for word in words.keys() {
            for (i, c) in word.chars().enumerate() {
                if i == 0 {
                    initial.insert(c)
                } else {
                    continuing.insert(c)
                };
            }
        }
        for c in &initial {
            self.add(c.to_string());
        }
        for c in &continuing {
            self.add(format!("{CONTINUATION}{c}"));
        }
    }

    /// Each word as the ids of its characters (after [`Self::add_characters`]).
    fn spell(&self, words: &BTreeMap<String, u64>) -> Vec<Word> {
        words
            .iter()
            .map(|(w, &count)| Word {
                symbols: w
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        self.ids[&if i == 0 {
                            c.to_string()
                        } else {
                            format!("{CONTINUATION}{c}")
                        }]
                    })
                    .collect(),
                count: count as i64,
            })
            .collect()
    }

    /// The token `pair` merges into: the right piece loses its `##`.
    fn merged(&self, pair: (u32, u32)) -> String {
        let left = &self.tokens[pair.0 as usize];
        let right = &self.tokens[pair.1 as usize];
        format!(
            "{left}{}",
            right.strip_prefix(CONTINUATION).unwrap_or(right)
        )
    }
}

/// How often each adjacent pair of ids occurs in the corpus, and where.
struct PairIndex {
    /// Occurrences of each pair, weighted by word frequency.
    counts: HashMap<(u32, u32), i64>,
    /// The words each pair occurs in.
    words: HashMap<(u32, u32), BTreeSet<usize>>,
    /// Pairs by count, possibly stale: an entry whose count is no longer
    /// the pair's is put back at its current count when popped. Among equal
    /// counts the smaller pair of ids wins.
    heap: BinaryHeap<(i64, Reverse<(u32, u32)>)>,
}

impl PairIndex {
    /// Counts every adjacent pair of `corpus`.
    fn new(corpus: &[Word]) -> Self {
        let mut counts: HashMap<(u32, u32), i64> = HashMap::new();
        let mut words: HashMap<(u32, u32), BTreeSet<usize>> = HashMap::new();
        for (w, word) in corpus.iter().enumerate() {
            for pair in word.symbols.windows(2) {
                *counts.entry((pair[0], pair[1])).or_default() += word.count;
                words.entry((pair[0], pair[1])).or_default().insert(w);
            }
        }
        let heap = counts.iter().map(|(&p, &c)| (c, Reverse(p))).collect();
        Self {
            counts,
            words,
            heap,
        }
    }

    /// The most frequent pair and its count; `None` when no pair is left.
    fn most_frequent(&mut self) -> Option<((u32, u32), i64)> {
        loop {
            let (count, Reverse(pair)) = self.heap.pop()?;
            let current = self.counts.get(&pair).copied().unwrap_or(0);
            if count == current {
                return Some((pair, count));
            }
            if current > 0 {
                self.heap.push((current, Reverse(pair)));
            }
        }
    }

    /// Replaces `pair` by `new_id` in every word holding it, and recounts
    /// the pairs those words had and have.
    fn merge(&mut self, corpus: &mut [Word], pair: (u32, u32), new_id: u32) {
        let affected: Vec<usize> = self
            .words
            .remove(&pair)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        let mut changed = BTreeSet::new();
        for w in affected {
            let word = &mut corpus[w];
            for p in word.symbols.windows(2) {
                *self.counts.entry((p[0], p[1])).or_default() -= word.count;
                changed.insert((p[0], p[1]));
            }
            word.symbols = merge(&word.symbols, pair, new_id);
            for p in word.symbols.windows(2) {
                *self.counts.entry((p[0], p[1])).or_default() += word.count;
                self.words.entry((p[0], p[1])).or_default().insert(w);
                changed.insert((p[0], p[1]));
            }
        }
        self.counts.remove(&pair);
        for p in changed {
            if let Some(&c) = self.counts.get(&p) {
                if c > 0 {
                    self.heap.push((c, Reverse(p)));
                }
            }
        }
    }
}

/// Replaces each non-overlapping occurrence of `pair` in `symbols`, left to right.
fn merge(symbols: &[u32], pair: (u32, u32), new_id: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(symbols.len());
    let mut i = 0;
    while i < symbols.len() {
        if i + 1 < symbols.len() && symbols[i] == pair.0 && symbols[i + 1] == pair.1 {
            out.push(new_id);
            i += 2;
        } else {
            out.push(symbols[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[(&str, u64)]) -> BTreeMap<String, u64> {
        list.iter().map(|(w, c)| (w.to_string(), *c)).collect()
    }

    #[test]
    fn frequent_words_become_single_pieces_after_the_specials_and_characters() {
        let vocab = learn_vocabulary(
            &words(&[("film", 10), ("films", 5), ("fun", 3)]),
            &["[PAD]", "[UNK]"],
            100,
            2,
        );
        assert_eq!(&vocab[..2], &["[PAD]", "[UNK]"]);
        assert!(vocab.contains(&"film".to_string()));
        assert!(vocab.contains(&"##s".to_string()));
        assert!(vocab.contains(&"f".to_string()));
        let unique: BTreeSet<&String> = vocab.iter().collect();
        assert_eq!(unique.len(), vocab.len(), "no duplicates");
    }

    #[test]
    fn the_vocabulary_size_and_minimum_frequency_are_respected() {
        let w = words(&[("abcdefgh", 10), ("xyz", 1)]);
        assert!(learn_vocabulary(&w, &["[PAD]"], 12, 2).len() <= 12);
        let all = learn_vocabulary(&w, &["[PAD]"], 1000, 2);
        assert!(
            !all.contains(&"xyz".to_string()),
            "a pair seen once is not merged with min frequency 2"
        );
        assert!(all.contains(&"abcdefgh".to_string()));
    }

    #[test]
    fn the_same_words_always_give_the_same_vocabulary() {
        let w = words(&[
            ("the", 9),
            ("then", 4),
            ("than", 4),
            ("thin", 4),
            ("this", 4),
            ("that", 4),
        ]);
        let first = learn_vocabulary(&w, &["[PAD]"], 40, 2);
        for _ in 0..5 {
            assert_eq!(learn_vocabulary(&w, &["[PAD]"], 40, 2), first);
        }
    }

    #[test]
    fn merging_replaces_non_overlapping_pairs_left_to_right() {
        assert_eq!(merge(&[1, 1, 1, 2], (1, 1), 9), vec![9, 1, 2]);
    }
}
