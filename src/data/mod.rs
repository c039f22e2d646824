//! Labelled examples: reading them from files and splitting them for training.
//!
//! Three formats are read, chosen by the file's extension: JSON Lines
//! (`.jsonl`, `.json`, `.ndjson`), CSV with a header (`.csv`) and TSV with a
//! header (`.tsv`, `.tab`). Every row is validated as it is read, and every
//! error names the file and the 1-based line, so a bad row in a 30,000-line
//! file can be found and fixed without guessing.
//!
//! CSV follows RFC 4180 quoting, so texts may hold commas, quotes and line
//! breaks. TSV cells are taken literally, quotes included, as most corpus
//! dumps expect; a TSV text therefore cannot hold a tab or a line break.
//! Column names in headers are matched after trimming surrounding spaces.
//!
//! [`split()`] makes seeded train/validation/test splits that are stratified by
//! label and never let copies of one text land in two different splits:
//! otherwise a model is tested on sentences it was trained on, and its
//! accuracy and calibration look better than they are.

mod read;
mod split;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use read::{read_examples, read_examples_with_aux, read_texts};
pub use split::{label_names, split};

/// One labelled example as read from a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The text to classify, exactly as the file gave it.
    pub text: String,
    /// The class, trimmed; integer labels in JSON become their decimal string.
    pub label: String,
    /// A second, usually finer label (e.g. trec6's `fine_label`) that only
    /// training uses, as an auxiliary task; never written to split files.
    #[serde(skip)]
    pub aux_label: Option<String>,
}

/// Which fields (JSON keys or header columns) hold the text and the label.
#[derive(Debug, Clone)]
pub struct FieldNames {
    /// Name of the field holding the text.
    pub text: String,
    /// Name of the field holding the label.
    pub label: String,
}

impl Default for FieldNames {
    fn default() -> Self {
        Self {
            text: "text".to_owned(),
            label: "label".to_owned(),
        }
    }
}

/// Fractions of the examples that go to validation, calibration and test;
/// train gets the rest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitFractions {
    /// Fraction for the validation split, in [0, 1).
    pub val: f64,
    /// Fraction for the calibration split (conformal sets and abstention
    /// thresholds), in [0, 1).
    pub calibration: f64,
    /// Fraction for the test split, in [0, 1).
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        Self {
            val: 0.1,
            calibration: 0.1,
            test: 0.1,
        }
    }
}

/// The four disjoint parts of a data set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Splits {
    /// Examples to fit the weights on.
    pub train: Vec<Example>,
    /// Examples for early stopping and temperature fitting.
    pub val: Vec<Example>,
    /// Examples for split-conformal calibration and abstention thresholds,
    /// seen by nothing else (the temperature is fitted on `val`).
    pub calibration: Vec<Example>,
    /// Examples held out for the final report.
    pub test: Vec<Example>,
}

/// Why examples could not be read or split.
///
/// Row-level variants carry the file and the 1-based line, and print as
/// `file:line: …` so editors and terminals can jump to the spot.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// The extension does not say which format the file is in.
    #[error(
        "{}: {}; use .jsonl, .json or .ndjson (JSON Lines), .csv (CSV with a header) or .tsv or .tab (TSV with a header)",
        .path.display(),
        .extension.as_ref().map_or_else(|| "no file extension".to_owned(), |e| format!("unsupported file extension '.{e}'"))
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// The extension as written, without its dot; `None` if there is none.
        extension: Option<String>,
    },

    /// A line is not valid UTF-8.
    #[error("{}:{line}: not valid UTF-8 text", .path.display())]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
    },

    /// A row cannot be parsed at all: bad JSON, not an object, wrong number of fields.
    #[error("{}:{line}: malformed row: {reason}", .path.display())]
    MalformedRow {
        /// The file.
        path: PathBuf,
        /// 1-based line (where the row starts).
        line: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// The header of a CSV or TSV file lacks a needed column.
    #[error(
        "{}:{line}: the header has no column '{column}'; columns present: {}",
        .path.display(),
        .present.join(", ")
    )]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// 1-based line of the header.
        line: u64,
        /// The column that was looked for.
        column: String,
        /// The columns the header does have.
        present: Vec<String>,
    },

    /// A JSON row lacks a needed field.
    #[error("{}:{line}: missing field '{field}'", .path.display())]
    MissingField {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The field that was looked for.
        field: String,
    },

    /// A field holds nothing but whitespace.
    #[error("{}:{line}: field '{field}' is empty", .path.display())]
    EmptyField {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The empty field.
        field: String,
    },

    /// A JSON field holds the wrong kind of value.
    #[error("{}:{line}: field '{field}' must be {expected}, found {found}", .path.display())]
    WrongType {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The offending field.
        field: String,
        /// What it should hold.
        expected: &'static str,
        /// What it holds instead, possibly with a hint.
        found: String,
    },

    /// The file holds no examples at all.
    #[error("{}: no examples in the file", .path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },

    /// There are no examples to take labels from.
    #[error("no examples, so no labels to learn")]
    NoExamples,

    /// Every example has the same label, so there is nothing to tell apart.
    #[error("only one class '{label}' in the examples; a classifier needs at least two")]
    SingleClass {
        /// The one label present.
        label: String,
    },

    /// Split fractions that leave no room for training.
    #[error(
        "split fractions must each be in [0, 1) and sum to less than 1, got val {val}, calibration {calibration} and test {test}"
    )]
    InvalidFractions {
        /// The validation fraction asked for.
        val: f64,
        /// The calibration fraction asked for.
        calibration: f64,
        /// The test fraction asked for.
        test: f64,
    },
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;

    /// The data sets shipped in `data/`, with the sizes and labels its README gives.
    const SHIPPED: [(&str, usize, &[&str]); 4] = [
        ("rotten_tomatoes.jsonl", 11_528, &["negative", "positive"]),
        (
            "trec6.jsonl",
            4_906,
            &["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"],
        ),
        (
            "tweets_sentiment.jsonl",
            34_342,
            &["negative", "neutral", "positive"],
        ),
        ("sms_spam.jsonl", 4_353, &["ham", "spam"]),
    ];

    fn texts(examples: &[Example]) -> BTreeSet<&str> {
        examples.iter().map(|e| e.text.as_str()).collect()
    }

    #[test]
    fn the_shipped_data_sets_read_and_split_with_no_text_in_two_splits() {
        for (name, size, labels) in SHIPPED {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("data")
                .join(name);
            let examples =
                read_examples(&path, &FieldNames::default()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(examples.len(), size, "{name}");
            assert_eq!(label_names(&examples).expect("classes"), labels, "{name}");

            let splits = split(examples, SplitFractions::default(), 0).expect("valid");
            let parts = [
                texts(&splits.train),
                texts(&splits.val),
                texts(&splits.calibration),
                texts(&splits.test),
            ];
            for (i, a) in parts.iter().enumerate() {
                for b in &parts[i + 1..] {
                    assert!(a.is_disjoint(b), "{name}: a text in two splits");
                }
            }
            let test_share = splits.test.len() as f64 / size as f64;
            assert!(
                (test_share - 0.1).abs() < 0.01,
                "{name}: test share {test_share}"
            );
        }
    }
}
