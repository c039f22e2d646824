//! Seeded, stratified, duplicate-safe train/validation/calibration/test
//! splits, and the label set.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::{DataError, Example, SplitFractions, Splits};
use crate::rng::SeededRng;

/// Splits examples into train, validation, calibration and test.
///
/// - Exact duplicate texts are grouped first and each group goes whole into
///   one split, so no test text was seen in training.
/// - Groups are stratified by label (a group's label is that of its first
///   example): each class is divided in the requested proportions, rounded,
///   and every class of three or more examples gets at least one example in
///   each split whose fraction is above zero, as far as its size (calibration
///   gives way first) and its duplicate groups
///   allow. Rounding never takes a class's last training example.
/// - The same seed always gives the same splits; each split is shuffled.
///
/// An empty input gives four empty splits.
pub fn split(
    examples: Vec<Example>,
    fractions: SplitFractions,
    seed: u64,
) -> Result<Splits, DataError> {
    check_fractions(fractions)?;
    let mut rng = SeededRng::new(seed);
    let mut splits = Splits::default();
    for mut groups in strata(group_by_text(examples)).into_values() {
        rng.shuffle(&mut groups);
        let size = groups.iter().map(Vec::len).sum();
        assign_groups(groups, ClassTargets::new(size, fractions), &mut splits);
    }
    rng.shuffle(&mut splits.train);
    rng.shuffle(&mut splits.val);
    rng.shuffle(&mut splits.calibration);
    rng.shuffle(&mut splits.test);
    Ok(splits)
}

/// The distinct labels, sorted (as strings), which fixes each class's index.
///
/// Fails when there are no examples or only one class, since neither can
/// train a classifier.
pub fn label_names(examples: &[Example]) -> Result<Vec<String>, DataError> {
    let labels: BTreeSet<&str> = examples.iter().map(|e| e.label.as_str()).collect();
    let mut iter = labels.iter();
    match (iter.next(), iter.next()) {
        (None, _) => Err(DataError::NoExamples),
        (Some(only), None) => Err(DataError::SingleClass {
            label: (*only).to_owned(),
        }),
        _ => Ok(labels.into_iter().map(str::to_owned).collect()),
    }
}

fn check_fractions(fractions: SplitFractions) -> Result<(), DataError> {
    let in_range = |f: f64| (0.0..1.0).contains(&f);
    let SplitFractions {
        val,
        calibration,
        test,
    } = fractions;
    if in_range(val) && in_range(calibration) && in_range(test) && val + calibration + test < 1.0 {
        Ok(())
    } else {
        Err(DataError::InvalidFractions {
            val,
            calibration,
            test,
        })
    }
}

/// Groups examples with exactly the same text, in order of first appearance.
fn group_by_text(examples: Vec<Example>) -> Vec<Vec<Example>> {
    let group_of: Vec<usize> = {
        let mut first_seen: BTreeMap<&str, usize> = BTreeMap::new();
        examples
            .iter()
            .map(|example| {
                let next = first_seen.len();
                *first_seen.entry(example.text.as_str()).or_insert(next)
            })
            .collect()
    };
    let count = group_of.iter().max().map_or(0, |&last| last + 1);
    let mut groups = vec![Vec::new(); count];
    for (example, group) in examples.into_iter().zip(group_of) {
        groups[group].push(example);
    }
    groups
}

/// Sorts groups into classes by the label of each group's first example.
fn strata(groups: Vec<Vec<Example>>) -> BTreeMap<String, Vec<Vec<Example>>> {
    let mut by_label: BTreeMap<String, Vec<Vec<Example>>> = BTreeMap::new();
    for group in groups {
        if let Some(first) = group.first() {
            by_label.entry(first.label.clone()).or_default().push(group);
        }
    }
    by_label
}

/// How many examples of one class each split should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClassTargets {
    train: usize,
    val: usize,
    calibration: usize,
    test: usize,
}

impl ClassTargets {
    fn new(size: usize, fractions: SplitFractions) -> Self {
        let share = |fraction: f64| {
            let rounded = (size as f64 * fraction).round() as usize;
            if rounded == 0 && fraction > 0.0 && size >= 3 {
                1
            } else {
                rounded
            }
        };
        let mut held_out = [
            share(fractions.val),
            share(fractions.calibration),
            share(fractions.test),
        ];
        // Rounding up can eat the whole class; train must keep one example.
        // Take from the largest held-out share; of equals, calibration gives
        // first, then validation, so a tiny class keeps its test example.
        const GIVES_FIRST: [usize; 3] = [1, 2, 0];
        while size > 0 && held_out.iter().sum::<usize>() >= size {
            let largest = (0..held_out.len())
                .max_by_key(|&i| (held_out[i], GIVES_FIRST[i]))
                .unwrap_or(0);
            held_out[largest] -= 1;
        }
        let [val, calibration, test] = held_out;
        Self {
            train: size - val - calibration - test,
            val,
            calibration,
            test,
        }
    }
}

/// Deals a class's shuffled groups to the splits, each group to the split
/// furthest below its target. With single examples the targets are met
/// exactly; a large duplicate group overshoots by at most its own size, and
/// ties go to train, so big groups tend to land there rather than crowd the
/// smaller evaluation splits.
fn assign_groups(groups: Vec<Vec<Example>>, targets: ClassTargets, splits: &mut Splits) {
    let mut shortfall = [
        targets.train,
        targets.val,
        targets.calibration,
        targets.test,
    ]
    .map(|n| n as i64);
    let parts = [
        &mut splits.train,
        &mut splits.val,
        &mut splits.calibration,
        &mut splits.test,
    ];
    for group in groups {
        let part = (0..parts.len())
            .max_by_key(|&i| (shortfall[i], Reverse(i)))
            .unwrap_or(0);
        shortfall[part] -= group.len() as i64;
        parts[part].extend(group);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn example(text: &str, label: &str) -> Example {
        Example {
            text: text.to_owned(),
            label: label.to_owned(),
            aux_label: None,
        }
    }

    /// `count` distinct examples of `label`.
    fn class(label: &str, count: usize) -> Vec<Example> {
        (0..count)
            .map(|i| example(&format!("{label} example {i}"), label))
            .collect()
    }

    /// Validation and test fractions, with no calibration split.
    fn fractions(val: f64, test: f64) -> SplitFractions {
        SplitFractions {
            val,
            calibration: 0.0,
            test,
        }
    }

    /// How many examples of each label a split holds.
    fn counts(examples: &[Example]) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for example in examples {
            *counts.entry(example.label.as_str()).or_default() += 1;
        }
        counts
    }

    /// Which splits (0 train, 1 val, 2 calibration, 3 test) each text appears in.
    fn splits_of_each_text(splits: &Splits) -> BTreeMap<&str, BTreeSet<usize>> {
        let mut seen: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
        for (part, examples) in [
            &splits.train,
            &splits.val,
            &splits.calibration,
            &splits.test,
        ]
        .into_iter()
        .enumerate()
        {
            for example in examples {
                seen.entry(example.text.as_str()).or_default().insert(part);
            }
        }
        seen
    }

    fn sorted(mut examples: Vec<Example>) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = examples.drain(..).map(|e| (e.text, e.label)).collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn each_class_is_split_in_the_requested_proportions() {
        let examples = [class("pos", 100), class("neg", 50)].concat();
        let splits = split(examples, fractions(0.1, 0.2), 1).expect("valid fractions");
        assert_eq!(
            counts(&splits.train),
            BTreeMap::from([("neg", 35), ("pos", 70)])
        );
        assert_eq!(
            counts(&splits.val),
            BTreeMap::from([("neg", 5), ("pos", 10)])
        );
        assert_eq!(
            counts(&splits.test),
            BTreeMap::from([("neg", 10), ("pos", 20)])
        );
    }

    #[test]
    fn every_split_of_a_class_with_three_or_more_examples_gets_at_least_one() {
        let examples = [
            class("big", 200),
            class("three", 3),
            class("two", 2),
            class("one", 1),
        ]
        .concat();
        let splits = split(examples, SplitFractions::default(), 5).expect("valid fractions");
        assert_eq!(counts(&splits.val).get("three"), Some(&1));
        assert_eq!(counts(&splits.test).get("three"), Some(&1));
        assert_eq!(counts(&splits.train).get("three"), Some(&1));
        assert_eq!(counts(&splits.calibration).get("three"), None);
        assert_eq!(counts(&splits.calibration).get("big"), Some(&20));
        assert_eq!(counts(&splits.train).get("two"), Some(&2));
        assert_eq!(counts(&splits.train).get("one"), Some(&1));
        assert_eq!(counts(&splits.val).get("big"), Some(&20));
    }

    #[test]
    fn train_keeps_an_example_of_every_class_even_when_the_fractions_round_up() {
        let splits = split(class("tiny", 4), fractions(0.49, 0.49), 2).expect("valid fractions");
        assert_eq!(
            (splits.train.len(), splits.val.len(), splits.test.len()),
            (1, 1, 2)
        );
    }

    #[test]
    fn a_zero_fraction_leaves_that_split_empty() {
        let splits = split(class("a", 30), fractions(0.2, 0.0), 3).expect("valid fractions");
        assert_eq!((splits.train.len(), splits.val.len()), (24, 6));
        assert!(splits.test.is_empty());
    }

    #[test]
    fn every_example_ends_up_in_exactly_one_split() {
        let mut examples = [class("a", 37), class("b", 11), class("c", 5)].concat();
        examples.extend([example("a example 3", "a"), example("b example 0", "c")]);
        let splits = split(examples.clone(), SplitFractions::default(), 9).expect("valid");
        let all = [splits.train, splits.val, splits.calibration, splits.test].concat();
        assert_eq!(sorted(all), sorted(examples));
    }

    #[test]
    fn the_same_seed_gives_the_same_splits_and_another_seed_different_ones() {
        let examples = [class("pos", 60), class("neg", 40)].concat();
        let first = split(examples.clone(), SplitFractions::default(), 42).expect("valid");
        let again = split(examples.clone(), SplitFractions::default(), 42).expect("valid");
        let other = split(examples, SplitFractions::default(), 43).expect("valid");
        assert_eq!(first, again);
        assert_ne!(first.test, other.test);
        assert_ne!(first.train, other.train);
    }

    #[test]
    fn each_split_is_shuffled_rather_than_grouped_by_class() {
        let examples = [class("pos", 50), class("neg", 50)].concat();
        let splits = split(examples, SplitFractions::default(), 4).expect("valid");
        let labels: Vec<&str> = splits.train.iter().map(|e| e.label.as_str()).collect();
        let changes = labels.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(changes > 10, "train is barely mixed: {labels:?}");
    }

    #[test]
    fn exact_duplicate_texts_never_straddle_splits() {
        let mut examples = Vec::new();
        for i in 0..60 {
            // Every text appears 1 to 4 times, some copies under another label.
            for copy in 0..(i % 4 + 1) {
                let label = if (i + copy) % 5 == 0 { "b" } else { "a" };
                examples.push(example(&format!("text {i}"), label));
            }
        }
        for seed in 0..20 {
            let splits = split(examples.clone(), fractions(0.2, 0.2), seed).expect("valid");
            for (text, parts) in splits_of_each_text(&splits) {
                assert_eq!(
                    parts.len(),
                    1,
                    "seed {seed}: {text:?} is in splits {parts:?}"
                );
            }
            assert!(!splits.val.is_empty() && !splits.test.is_empty());
        }
    }

    #[test]
    fn a_group_of_duplicates_is_stratified_by_its_first_example() {
        let examples = vec![
            example("x", "b"),
            example("shared", "a"),
            example("y", "b"),
            example("shared", "b"),
        ];
        let by_label = strata(group_by_text(examples));
        assert_eq!(
            by_label,
            BTreeMap::from([
                (
                    "a".to_owned(),
                    vec![vec![example("shared", "a"), example("shared", "b")]]
                ),
                (
                    "b".to_owned(),
                    vec![vec![example("x", "b")], vec![example("y", "b")]]
                ),
            ])
        );
    }

    #[test]
    fn fractions_outside_the_unit_interval_or_summing_to_one_are_rejected() {
        let bad = [
            (-0.1, 0.1),
            (0.1, 1.0),
            (0.5, 0.5),
            (0.7, 0.4),
            (f64::NAN, 0.1),
            (0.1, f64::INFINITY),
        ];
        for (val, test) in bad {
            let error = split(class("a", 10), fractions(val, test), 0).expect_err("bad fractions");
            assert!(
                matches!(error, DataError::InvalidFractions { .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains("sum to less than 1"), "{error}");
        }
    }

    #[test]
    fn a_calibration_split_takes_its_share_of_each_class_from_training() {
        let examples = [class("pos", 100), class("neg", 50)].concat();
        let wanted = SplitFractions {
            val: 0.1,
            calibration: 0.2,
            test: 0.1,
        };
        let splits = split(examples, wanted, 6).expect("valid fractions");
        assert_eq!(
            counts(&splits.calibration),
            BTreeMap::from([("neg", 10), ("pos", 20)])
        );
        assert_eq!(
            counts(&splits.train),
            BTreeMap::from([("neg", 30), ("pos", 60)])
        );
        assert_eq!(counts(&splits.test), counts(&splits.val));
    }

    #[test]
    fn no_examples_split_into_four_empty_parts() {
        let splits = split(Vec::new(), SplitFractions::default(), 0).expect("valid");
        assert_eq!(splits, Splits::default());
    }

    #[test]
    fn random_data_with_many_duplicates_keeps_every_invariant() {
        let mut rng = SeededRng::new(17);
        for round in 0..50 {
            let examples: Vec<Example> = (0..rng.below(200))
                .map(|_| {
                    let text = format!("text {}", rng.below(60));
                    let label = format!("class {}", rng.below(4));
                    example(&text, &label)
                })
                .collect();
            let wanted = SplitFractions {
                val: rng.below(4) as f64 * 0.1,
                calibration: rng.below(3) as f64 * 0.1,
                test: rng.below(4) as f64 * 0.1,
            };
            let splits = split(examples.clone(), wanted, round).expect("valid");
            for (text, parts) in splits_of_each_text(&splits) {
                assert_eq!(parts.len(), 1, "round {round}: {text:?} in {parts:?}");
            }
            let all = [splits.train, splits.val, splits.calibration, splits.test].concat();
            assert_eq!(sorted(all), sorted(examples), "round {round}");
        }
    }

    #[test]
    fn label_names_are_sorted_and_unique() {
        let examples = [class("pos", 2), class("neg", 3), class("neutral", 1)].concat();
        assert_eq!(
            label_names(&examples).expect("three classes"),
            ["neg", "neutral", "pos"]
        );
    }

    #[test]
    fn a_single_class_is_an_error_naming_it() {
        let error = label_names(&class("spam", 4)).expect_err("one class");
        assert!(matches!(error, DataError::SingleClass { .. }), "{error:?}");
        assert!(
            error.to_string().contains("only one class 'spam'"),
            "{error}"
        );
    }

    #[test]
    fn no_examples_have_no_label_names() {
        let error = label_names(&[]).expect_err("nothing");
        assert!(matches!(error, DataError::NoExamples), "{error:?}");
    }
}
