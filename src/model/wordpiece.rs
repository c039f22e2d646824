//! Learning a WordPiece vocabulary, deterministically.
//!
//! The `tokenizers` crate's trainer walks hash maps with a per-process random
//! seed, so the same texts give a slightly different vocabulary on every run,
//! and with it a different model: training would not be reproducible. This is
//! the same algorithm (BPE-style merges of the most frequent adjacent pair, with
//! `##` marking pieces that continue a word), with ties broken by token ids that
//! are themselves assigned in a fixed order.

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
    let mut tokens: Vec<String> = specials.iter().map(|s| s.to_string()).collect();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let add = |t: String, tokens: &mut Vec<String>, ids: &mut HashMap<String, u32>| -> u32 {
        if let Some(&id) = ids.get(&t) {
            return id;
        }
        tokens.push(t.clone());
        ids.insert(t, tokens.len() as u32 - 1);
        tokens.len() as u32 - 1
    };
    for (i, s) in specials.iter().enumerate() {
        ids.insert(s.to_string(), i as u32);
    }
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
        add(c.to_string(), &mut tokens, &mut ids);
    }
    for c in &continuing {
        add(format!("{CONTINUATION}{c}"), &mut tokens, &mut ids);
    }
    let mut corpus: Vec<Word> = words
        .iter()
        .map(|(w, &count)| Word {
            symbols: w
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    ids[&if i == 0 {
                        c.to_string()
                    } else {
                        format!("{CONTINUATION}{c}")
                    }]
                })
                .collect(),
            count: count as i64,
        })
        .collect();

    let mut pair_counts: HashMap<(u32, u32), i64> = HashMap::new();
    let mut pair_words: HashMap<(u32, u32), BTreeSet<usize>> = HashMap::new();
    for (w, word) in corpus.iter().enumerate() {
        for pair in word.symbols.windows(2) {
            *pair_counts.entry((pair[0], pair[1])).or_default() += word.count;
            pair_words.entry((pair[0], pair[1])).or_default().insert(w);
        }
    }
    // Max-heap on count; among equal counts the smaller pair of ids wins.
    let mut heap: BinaryHeap<(i64, std::cmp::Reverse<(u32, u32)>)> = pair_counts
        .iter()
        .map(|(&p, &c)| (c, std::cmp::Reverse(p)))
        .collect();
    while tokens.len() < vocab_size {
        let Some((count, std::cmp::Reverse(pair))) = heap.pop() else {
            break;
        };
        let current = pair_counts.get(&pair).copied().unwrap_or(0);
        if count != current {
            if current > 0 {
                heap.push((current, std::cmp::Reverse(pair)));
            }
            continue;
        }
        if count < min_frequency as i64 || count <= 0 {
            break;
        }
        let left = &tokens[pair.0 as usize];
        let right = &tokens[pair.1 as usize];
        let merged = format!(
            "{left}{}",
            right.strip_prefix(CONTINUATION).unwrap_or(right)
        );
        let new_id = add(merged, &mut tokens, &mut ids);
        let affected: Vec<usize> = pair_words
            .remove(&pair)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        let mut changed = BTreeSet::new();
        for w in affected {
            let word = &mut corpus[w];
            for p in word.symbols.windows(2) {
                *pair_counts.entry((p[0], p[1])).or_default() -= word.count;
                changed.insert((p[0], p[1]));
            }
            word.symbols = merge(&word.symbols, pair, new_id);
            for p in word.symbols.windows(2) {
                *pair_counts.entry((p[0], p[1])).or_default() += word.count;
                pair_words.entry((p[0], p[1])).or_default().insert(w);
                changed.insert((p[0], p[1]));
            }
        }
        pair_counts.remove(&pair);
        for p in changed {
            if let Some(&c) = pair_counts.get(&p) {
                if c > 0 {
                    heap.push((c, std::cmp::Reverse(p)));
                }
            }
        }
    }
    tokens
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
