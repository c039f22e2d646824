//! Reading examples from JSON Lines, CSV and TSV files.
//!
//! Reading happens in two steps: the format-specific part pulls the wanted
//! fields out of each row (a `RawRow`), then one shared set of checks turns
//! them into texts and labels, so every format rejects the same mistakes with
//! the same messages.

use std::path::Path;

use serde_json::{Map, Value};

use super::{DataError, Example, FieldNames};

/// Reads labelled examples from a JSON Lines, CSV or TSV file (chosen by extension).
///
/// Texts are kept exactly as written; labels are trimmed, and integer labels
/// in JSON become their decimal string. Fields other than the two named are
/// ignored. The first bad row stops the reading with an error naming its line.
pub fn read_examples(path: &Path, fields: &FieldNames) -> Result<Vec<Example>, DataError> {
    read_examples_with_aux(path, fields, None)
}

/// [`read_examples`], also reading the auxiliary label field `aux` when
/// given. A row may lack it (a JSON key absent or null): that example simply
/// takes no part in the auxiliary task; a present value follows the rules of
/// labels. In CSV and TSV the column must exist.
pub fn read_examples_with_aux(
    path: &Path,
    fields: &FieldNames,
    aux: Option<&str>,
) -> Result<Vec<Example>, DataError> {
    let mut wanted = vec![fields.text.as_str(), fields.label.as_str()];
    wanted.extend(aux);
    let rows = read_rows(path, &wanted)?;
    rows.into_iter()
        .map(|mut row| {
            let text = text_value(path, row.line, &fields.text, row.take(0))?;
            let label = label_value(path, row.line, &fields.label, row.take(1))?;
            let aux_label = match aux {
                Some(field) => match row.take(2) {
                    None | Some(RawValue::Json(Value::Null)) => None,
                    value => Some(label_value(path, row.line, field, value)?),
                },
                None => None,
            };
            Ok(Example {
                text,
                label,
                aux_label,
            })
        })
        .collect()
}

/// Reads unlabelled texts (out-of-distribution sets, inputs to predict) from
/// a file in any of the formats [`read_examples`] accepts; labels, if present,
/// are ignored.
pub fn read_texts(path: &Path, text_field: &str) -> Result<Vec<String>, DataError> {
    let rows = read_rows(path, &[text_field])?;
    rows.into_iter()
        .map(|mut row| text_value(path, row.line, text_field, row.take(0)))
        .collect()
}

/// The file formats understood, named by what they are rather than their extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    JsonLines,
    Csv,
    Tsv,
}

impl Format {
    /// Picks the format from the file's extension, ignoring case.
    fn of(path: &Path) -> Result<Self, DataError> {
        let extension = path.extension().map(|e| e.to_string_lossy().into_owned());
        match extension.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("jsonl" | "json" | "ndjson") => Ok(Self::JsonLines),
            Some("csv") => Ok(Self::Csv),
            Some("tsv" | "tab") => Ok(Self::Tsv),
            _ => Err(DataError::UnknownFormat {
                path: path.to_owned(),
                extension,
            }),
        }
    }
}

/// A field's value as the file holds it, before any checks.
#[derive(Debug)]
enum RawValue {
    Json(Value),
    Cell(String),
}

/// The wanted fields of one row, in the order they were asked for.
#[derive(Debug)]
struct RawRow {
    /// 1-based line where the row starts.
    line: u64,
    /// One entry per wanted field; `None` where the row lacks it.
    values: Vec<Option<RawValue>>,
}

impl RawRow {
    /// Takes the value of the `index`-th wanted field out of the row.
    fn take(&mut self, index: usize) -> Option<RawValue> {
        self.values.get_mut(index).and_then(Option::take)
    }
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads the whole file and pulls the `wanted` fields out of every row.
fn read_rows(path: &Path, wanted: &[&str]) -> Result<Vec<RawRow>, DataError> {
    let format = Format::of(path)?;
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    // Spreadsheet programs like to start UTF-8 exports with a byte-order mark,
    // which would otherwise stick to the first JSON key or column name.
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
    let rows = match format {
        Format::JsonLines => json_rows(path, bytes, wanted)?,
        Format::Csv => delimited_rows(path, bytes, b',', wanted)?,
        Format::Tsv => delimited_rows(path, bytes, b'\t', wanted)?,
    };
    if rows.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_owned(),
        });
    }
    Ok(rows)
}

/// One JSON object per line; blank lines are skipped.
fn json_rows(path: &Path, bytes: &[u8], wanted: &[&str]) -> Result<Vec<RawRow>, DataError> {
    let mut rows = Vec::new();
    for (index, raw_line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = index as u64 + 1;
        let text = std::str::from_utf8(raw_line).map_err(|_| DataError::InvalidUtf8 {
            path: path.to_owned(),
            line,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let object = parse_object(text).map_err(|reason| DataError::MalformedRow {
            path: path.to_owned(),
            line,
            reason,
        })?;
        let values = wanted
            .iter()
            .map(|name| object.get(*name).cloned().map(RawValue::Json))
            .collect();
        rows.push(RawRow { line, values });
    }
    Ok(rows)
}

/// Parses one line as a JSON object, or says in words why it is not one.
fn parse_object(line: &str) -> Result<Map<String, Value>, String> {
    // A whole-file JSON array is the commonest mistake with a `.json` file.
    let hint = if line.trim_start().starts_with('[') {
        " (JSON Lines needs one object per line, not an array)"
    } else {
        ""
    };
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(format!(
            "expected a JSON object, found {}{hint}",
            describe(&other)
        )),
        Err(error) => Err(format!(
            "invalid JSON at column {}: {}{hint}",
            error.column(),
            json_error_without_position(&error)
        )),
    }
}

/// serde_json ends its messages with "at line 1 column N"; within one line of
/// a larger file that "line 1" misleads, so it is cut off and the column kept.
fn json_error_without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match message.strip_suffix(&suffix) {
        Some(bare) => bare.to_owned(),
        None => message,
    }
}

/// CSV or TSV with a header row naming the columns.
fn delimited_rows(
    path: &Path,
    bytes: &[u8],
    delimiter: u8,
    wanted: &[&str],
) -> Result<Vec<RawRow>, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        // TSV files in the wild (SST, GLUE, most corpus dumps) hold quotes as
        // ordinary characters; honouring them would let one stray `"` swallow
        // every line up to the next one.
        .quoting(delimiter != b'\t')
        .from_reader(bytes);
    let lines = LineStarts::new(bytes);
    let header = reader
        .byte_headers()
        .map_err(|error| csv_error(path, &lines, error))?
        .clone();
    if header.is_empty() {
        return Ok(Vec::new());
    }
    let header_line = lines.line_of(header.position()).max(1);
    let columns = column_indices(path, header_line, &header, wanted)?;
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    while reader
        .read_byte_record(&mut record)
        .map_err(|error| csv_error(path, &lines, error))?
    {
        let line = lines.line_of(record.position());
        let values = columns
            .iter()
            .map(|&column| cell(path, line, &record, column))
            .collect::<Result<_, _>>()?;
        rows.push(RawRow { line, values });
    }
    Ok(rows)
}

/// Finds the column of each wanted field in the header, or names the one missing.
fn column_indices(
    path: &Path,
    line: u64,
    header: &csv::ByteRecord,
    wanted: &[&str],
) -> Result<Vec<usize>, DataError> {
    let present = header
        .iter()
        .map(|name| {
            std::str::from_utf8(name)
                .map(|name| name.trim().to_owned())
                .map_err(|_| DataError::InvalidUtf8 {
                    path: path.to_owned(),
                    line,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    wanted
        .iter()
        .map(|name| {
            present
                .iter()
                .position(|column| column == name)
                .ok_or_else(|| DataError::MissingColumn {
                    path: path.to_owned(),
                    line,
                    column: (*name).to_owned(),
                    present: present.clone(),
                })
        })
        .collect()
}

/// One cell of a record as text; only the cells used are required to be UTF-8.
fn cell(
    path: &Path,
    line: u64,
    record: &csv::ByteRecord,
    column: usize,
) -> Result<Option<RawValue>, DataError> {
    let Some(bytes) = record.get(column) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(bytes).map_err(|_| DataError::InvalidUtf8 {
        path: path.to_owned(),
        line,
    })?;
    Ok(Some(RawValue::Cell(text.to_owned())))
}

/// Finds the 1-based line a CSV record starts on.
///
/// The csv crate's own line count leaves out the blank lines it skips, and its
/// byte offset may point at the line break before the record, so the line is
/// recounted here from the bytes.
struct LineStarts<'a> {
    bytes: &'a [u8],
    /// Offsets of every `\n`, in order.
    newlines: Vec<usize>,
}

impl<'a> LineStarts<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let newlines = bytes
            .iter()
            .enumerate()
            .filter_map(|(offset, &b)| (b == b'\n').then_some(offset))
            .collect();
        Self { bytes, newlines }
    }

    /// The line of a record at `position`; 0 when the csv crate gives none.
    fn line_of(&self, position: Option<&csv::Position>) -> u64 {
        let Some(position) = position else {
            return 0;
        };
        let mut start = usize::try_from(position.byte()).unwrap_or(usize::MAX);
        // A record cannot begin with a line break, so any here belong to the lines before it.
        while self
            .bytes
            .get(start)
            .is_some_and(|&b| b == b'\r' || b == b'\n')
        {
            start += 1;
        }
        self.newlines.partition_point(|&offset| offset < start) as u64 + 1
    }
}

/// Turns the csv crate's error into ours, keeping the line it happened on.
fn csv_error(path: &Path, lines: &LineStarts, error: csv::Error) -> DataError {
    let line = lines.line_of(error.position());
    let reason = match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("expected {expected_len} fields as in the header, found {len}"),
        _ => error.to_string(),
    };
    DataError::MalformedRow {
        path: path.to_owned(),
        line,
        reason,
    }
}

/// Checks a text: present, a string, not blank. The text itself is kept as it is.
fn text_value(
    path: &Path,
    line: u64,
    field: &str,
    value: Option<RawValue>,
) -> Result<String, DataError> {
    let text = match value {
        None => return Err(missing_field(path, line, field)),
        Some(RawValue::Cell(text) | RawValue::Json(Value::String(text))) => text,
        Some(RawValue::Json(other)) => {
            return Err(DataError::WrongType {
                path: path.to_owned(),
                line,
                field: field.to_owned(),
                expected: "a string",
                found: describe(&other),
            })
        }
    };
    if text.trim().is_empty() {
        return Err(empty_field(path, line, field));
    }
    Ok(text)
}

/// Checks a label: present, a string or an integer, not blank; trims it.
fn label_value(
    path: &Path,
    line: u64,
    field: &str,
    value: Option<RawValue>,
) -> Result<String, DataError> {
    let label = match value {
        None => return Err(missing_field(path, line, field)),
        Some(RawValue::Cell(label) | RawValue::Json(Value::String(label))) => {
            label.trim().to_owned()
        }
        Some(RawValue::Json(Value::Number(number))) if number.is_i64() || number.is_u64() => {
            number.to_string()
        }
        Some(RawValue::Json(other)) => {
            return Err(DataError::WrongType {
                path: path.to_owned(),
                line,
                field: field.to_owned(),
                expected: "a string or an integer",
                found: describe_label(&other),
            })
        }
    };
    if label.is_empty() {
        return Err(empty_field(path, line, field));
    }
    Ok(label)
}

fn missing_field(path: &Path, line: u64, field: &str) -> DataError {
    DataError::MissingField {
        path: path.to_owned(),
        line,
        field: field.to_owned(),
    }
}

fn empty_field(path: &Path, line: u64, field: &str) -> DataError {
    DataError::EmptyField {
        path: path.to_owned(),
        line,
        field: field.to_owned(),
    }
}

/// Names the kind of a JSON value for error messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// Like [`describe`], with a hint for the float that was meant as an integer.
fn describe_label(value: &Value) -> String {
    let integral_float = value.as_f64().is_some_and(|x| x.fract() == 0.0);
    if integral_float {
        format!(
            "{} (write integer labels without a decimal point or exponent)",
            describe(value)
        )
    } else {
        describe(value)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tempfile::TempDir;

    use super::*;
    use crate::rng::SeededRng;

    /// Writes `contents` to `examples.<extension>` in a fresh directory, which
    /// lives as long as the returned guard.
    fn file(extension: &str, contents: &[u8]) -> (TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(format!("examples.{extension}"));
        std::fs::write(&path, contents).expect("write the test file");
        (dir, path)
    }

    fn read(extension: &str, contents: &str) -> Result<Vec<Example>, DataError> {
        read_with(extension, contents, &FieldNames::default())
    }

    fn read_with(
        extension: &str,
        contents: &str,
        fields: &FieldNames,
    ) -> Result<Vec<Example>, DataError> {
        let (_dir, path) = file(extension, contents.as_bytes());
        read_examples(&path, fields)
    }

    fn example(text: &str, label: &str) -> Example {
        Example {
            text: text.to_owned(),
            label: label.to_owned(),
            aux_label: None,
        }
    }

    /// Reads `contents`, which must fail, and gives the error and its message.
    fn failure(extension: &str, contents: &[u8]) -> (DataError, String) {
        let (_dir, path) = file(extension, contents);
        match read_examples(&path, &FieldNames::default()) {
            Ok(examples) => panic!("expected an error, read {examples:?}"),
            Err(error) => {
                let message = error.to_string();
                (error, message)
            }
        }
    }

    /// Asserts the message starts with `examples.<extension>:<line>:` and mentions `words`.
    fn assert_names_line(message: &str, extension: &str, line: u64, words: &[&str]) {
        let location = format!("examples.{extension}:{line}: ");
        assert!(
            message.contains(&location),
            "{message:?} lacks {location:?}"
        );
        for word in words {
            assert!(message.contains(word), "{message:?} lacks {word:?}");
        }
    }

    #[test]
    fn a_jsonl_file_is_read_line_by_line_skipping_blank_lines_and_other_fields() {
        let contents = concat!(
            "{\"text\": \"A fine film.\", \"label\": \"positive\", \"id\": 7}\n",
            "\n",
            "   \t\n",
            "{\"label\": \"negative\", \"text\": \"Dull.\"}\n",
        );
        let examples = read("jsonl", contents).expect("valid file");
        assert_eq!(
            examples,
            vec![
                example("A fine film.", "positive"),
                example("Dull.", "negative")
            ]
        );
    }

    #[test]
    fn an_auxiliary_label_is_read_where_present_and_left_out_where_absent_or_null() {
        let contents = concat!(
            "{\"text\": \"Who?\", \"label\": \"HUM\", \"fine\": \"ind\"}\n",
            "{\"text\": \"When?\", \"label\": \"NUM\", \"fine\": 3}\n",
            "{\"text\": \"Where?\", \"label\": \"LOC\", \"fine\": null}\n",
            "{\"text\": \"Why?\", \"label\": \"DESC\"}\n",
        );
        let (_dir, path) = file("jsonl", contents.as_bytes());
        let examples = read_examples_with_aux(&path, &FieldNames::default(), Some("fine")).unwrap();
        let aux: Vec<Option<&str>> = examples.iter().map(|e| e.aux_label.as_deref()).collect();
        assert_eq!(aux, vec![Some("ind"), Some("3"), None, None]);
        assert_eq!(examples[0].label, "HUM");
    }

    #[test]
    fn a_malformed_auxiliary_label_is_an_error_naming_the_line_and_field() {
        let contents = "{\"text\": \"Who?\", \"label\": \"HUM\", \"fine\": [1]}\n";
        let (_dir, path) = file("jsonl", contents.as_bytes());
        let message = read_examples_with_aux(&path, &FieldNames::default(), Some("fine"))
            .unwrap_err()
            .to_string();
        assert_names_line(&message, "jsonl", 1, &["fine"]);
        let (_dir, path) = file("csv", b"text,label\nWho?,HUM\n");
        let message = read_examples_with_aux(&path, &FieldNames::default(), Some("fine"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("fine"), "{message}");
    }

    #[test]
    fn json_and_ndjson_files_are_read_as_json_lines_whatever_the_case_of_the_extension() {
        for extension in ["json", "ndjson", "JSONL", "Json"] {
            let examples = read(extension, "{\"text\": \"hi\", \"label\": \"a\"}\n")
                .unwrap_or_else(|e| panic!("{extension}: {e}"));
            assert_eq!(examples, vec![example("hi", "a")], "{extension}");
        }
    }

    #[test]
    fn a_csv_file_with_quoted_commas_quotes_and_newlines_is_read() {
        let contents = concat!(
            "id,label,text\n",
            "1,pos,\"Hello, world\"\n",
            "2,neg,\"She said \"\"no\"\"\nand left\"\n",
            "3,pos,plain\n",
        );
        let examples = read("csv", contents).expect("valid file");
        assert_eq!(
            examples,
            vec![
                example("Hello, world", "pos"),
                example("She said \"no\"\nand left", "neg"),
                example("plain", "pos"),
            ]
        );
    }

    #[test]
    fn a_tsv_file_is_read_with_quotes_kept_as_ordinary_characters() {
        let contents = "label\ttext\npos\t\"Quoted\" at the start\nneg\tit's a \"half quote\n";
        for extension in ["tsv", "tab"] {
            let examples = read(extension, contents).expect("valid file");
            assert_eq!(
                examples,
                vec![
                    example("\"Quoted\" at the start", "pos"),
                    example("it's a \"half quote", "neg"),
                ]
            );
        }
    }

    #[test]
    fn custom_field_names_pick_the_text_and_label() {
        let fields = FieldNames {
            text: "sentence".to_owned(),
            label: "y".to_owned(),
        };
        let json = "{\"text\": \"ignored\", \"sentence\": \"used\", \"y\": \"b\"}\n";
        assert_eq!(
            read_with("jsonl", json, &fields).expect("valid"),
            vec![example("used", "b")]
        );
        let csv = "label,sentence,y\nignored,used,b\n";
        assert_eq!(
            read_with("csv", csv, &fields).expect("valid"),
            vec![example("used", "b")]
        );
    }

    #[test]
    fn integer_labels_become_their_decimal_string() {
        let contents = concat!(
            "{\"text\": \"a\", \"label\": 0}\n",
            "{\"text\": \"b\", \"label\": -3}\n",
            "{\"text\": \"c\", \"label\": 18446744073709551615}\n",
        );
        let labels: Vec<String> = read("jsonl", contents)
            .expect("valid file")
            .into_iter()
            .map(|e| e.label)
            .collect();
        assert_eq!(labels, ["0", "-3", "18446744073709551615"]);
    }

    #[test]
    fn labels_are_trimmed_but_texts_are_kept_as_they_are() {
        let json = "{\"text\": \"  spaced out \", \"label\": \" pos\\t\"}\n";
        assert_eq!(
            read("jsonl", json).expect("valid"),
            vec![example("  spaced out ", "pos")]
        );
        let csv = "text,label\n  spaced out ,  neg \n";
        assert_eq!(
            read("csv", csv).expect("valid"),
            vec![example("  spaced out ", "neg")]
        );
    }

    #[test]
    fn windows_line_endings_are_accepted_in_every_format() {
        let json =
            "{\"text\": \"a\", \"label\": \"x\"}\r\n\r\n{\"text\": \"b\", \"label\": \"y\"}\r\n";
        let csv = "text,label\r\na,x\r\nb,y\r\n";
        let tsv = "text\tlabel\r\na\tx\r\nb\ty\r\n";
        let expected = vec![example("a", "x"), example("b", "y")];
        assert_eq!(read("jsonl", json).expect("jsonl"), expected);
        assert_eq!(read("csv", csv).expect("csv"), expected);
        assert_eq!(read("tsv", tsv).expect("tsv"), expected);
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_ignored() {
        let json = "\u{feff}{\"text\": \"a\", \"label\": \"x\"}\n";
        let csv = "\u{feff}text,label\na,x\n";
        assert_eq!(read("jsonl", json).expect("jsonl"), vec![example("a", "x")]);
        assert_eq!(read("csv", csv).expect("csv"), vec![example("a", "x")]);
    }

    #[test]
    fn blank_lines_between_csv_rows_are_skipped_and_later_lines_keep_their_numbers() {
        assert_eq!(
            read("csv", "\ntext,label\na,x\n\n\nb,y\n\r\n").expect("valid"),
            vec![example("a", "x"), example("b", "y")]
        );
        // Lines: 1 header, 2 row, 3-4 blank, 5 row, 6 blank (CRLF), 7-8 quoted row, 9 blank, 10 bad.
        let contents = "text,label\r\na,x\n\n\nb,y\n\r\n\"q\nq\",z\n\nc\n";
        let (_, message) = failure("csv", contents.as_bytes());
        assert_names_line(&message, "csv", 10, &["expected 2 fields", "found 1"]);
        let contents = "text,label\na,x\n\n\nb,\n";
        let (_, message) = failure("csv", contents.as_bytes());
        assert_names_line(&message, "csv", 5, &["field 'label' is empty"]);
        let (_, message) = failure("tsv", b"\n\ntext\tclass\na\tb\n");
        assert_names_line(&message, "tsv", 3, &["no column 'label'"]);
    }

    #[test]
    fn texts_are_read_without_labels_from_every_format() {
        let cases = [
            (
                "jsonl",
                "{\"text\": \"one\"}\n{\"text\": \"two\", \"label\": {}}\n",
            ),
            ("csv", "text\none\ntwo\n"),
            ("tsv", "label\ttext\n\tone\n\ttwo\n"),
        ];
        for (extension, contents) in cases {
            let (_dir, path) = file(extension, contents.as_bytes());
            let texts = read_texts(&path, "text").unwrap_or_else(|e| panic!("{extension}: {e}"));
            assert_eq!(texts, ["one", "two"], "{extension}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error_naming_the_file_and_the_cause() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("absent.jsonl");
        let error = read_examples(&path, &FieldNames::default()).expect_err("no such file");
        assert!(matches!(error, DataError::Io { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("absent.jsonl"), "{message}");
        assert!(message.contains("No such file"), "{message}");
    }

    #[test]
    fn an_unknown_extension_is_an_error_listing_the_supported_ones() {
        for name in ["examples.txt", "examples"] {
            let dir = tempfile::tempdir().expect("temporary directory");
            let path = dir.path().join(name);
            std::fs::write(&path, "text,label\na,b\n").expect("write");
            let message = read_texts(&path, "text").expect_err("unknown").to_string();
            assert!(message.contains(name), "{message}");
            for supported in [".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".tab"] {
                assert!(message.contains(supported), "{message}");
            }
        }
    }

    #[test]
    fn a_jsonl_line_with_bad_json_is_an_error_naming_the_line_and_column() {
        let contents =
            b"{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"oops\" \"label\": \"b\"}\n";
        let (error, message) = failure("jsonl", contents);
        assert!(
            matches!(error, DataError::MalformedRow { line: 2, .. }),
            "{error:?}"
        );
        assert_names_line(&message, "jsonl", 2, &["invalid JSON at column 17"]);
        assert!(!message.contains("line 1"), "{message}");
    }

    #[test]
    fn a_jsonl_line_that_is_not_an_object_is_an_error_naming_the_line() {
        let contents = b"{\"text\": \"ok\", \"label\": \"a\"}\n\"just a string\"\n";
        let (_, message) = failure("jsonl", contents);
        assert_names_line(
            &message,
            "jsonl",
            2,
            &["expected a JSON object, found a string"],
        );
    }

    #[test]
    fn a_json_array_file_is_an_error_with_a_hint_about_json_lines() {
        let one_line = b"[{\"text\": \"a\", \"label\": \"x\"}]\n";
        let pretty = b"[\n  {\"text\": \"a\", \"label\": \"x\"}\n]\n";
        for contents in [&one_line[..], &pretty[..]] {
            let (_, message) = failure("json", contents);
            assert_names_line(&message, "json", 1, &["one object per line"]);
        }
    }

    #[test]
    fn a_jsonl_row_without_the_text_field_is_an_error_naming_the_line() {
        let contents =
            b"{\"text\": \"ok\", \"label\": \"a\"}\n{\"txt\": \"typo\", \"label\": \"b\"}\n";
        let (error, message) = failure("jsonl", contents);
        assert!(
            matches!(error, DataError::MissingField { line: 2, .. }),
            "{error:?}"
        );
        assert_names_line(&message, "jsonl", 2, &["missing field 'text'"]);
    }

    #[test]
    fn a_jsonl_row_without_the_label_field_is_an_error_naming_the_line() {
        let contents = b"\n{\"text\": \"no label\"}\n";
        let (_, message) = failure("jsonl", contents);
        assert_names_line(&message, "jsonl", 2, &["missing field 'label'"]);
    }

    #[test]
    fn an_empty_or_whitespace_text_is_an_error_naming_the_line() {
        let cases: [(&str, &[u8], u64); 4] = [
            ("jsonl", b"{\"text\": \"\", \"label\": \"a\"}\n", 1),
            ("jsonl", b"{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \" \\n\\t\", \"label\": \"a\"}\n", 2),
            ("csv", b"text,label\nok,a\n,a\n", 3),
            ("tsv", b"text\tlabel\n   \ta\n", 2),
        ];
        for (extension, contents, line) in cases {
            let (error, message) = failure(extension, contents);
            assert!(matches!(error, DataError::EmptyField { .. }), "{error:?}");
            assert_names_line(&message, extension, line, &["field 'text' is empty"]);
        }
    }

    #[test]
    fn an_empty_json_label_is_an_error_naming_the_line() {
        for label in ["\"\"", "\"   \""] {
            let contents = format!("{{\"text\": \"ok\", \"label\": {label}}}\n");
            let (_, message) = failure("jsonl", contents.as_bytes());
            assert_names_line(&message, "jsonl", 1, &["field 'label' is empty"]);
        }
    }

    #[test]
    fn a_csv_row_with_a_missing_label_is_an_error_naming_the_line() {
        let contents = b"text,label\nfine,pos\nno label here,\n";
        let (error, message) = failure("csv", contents);
        assert!(
            matches!(error, DataError::EmptyField { line: 3, .. }),
            "{error:?}"
        );
        assert_names_line(&message, "csv", 3, &["field 'label' is empty"]);
    }

    #[test]
    fn a_text_that_is_not_a_string_is_an_error_naming_the_line() {
        let cases = [
            ("42", "the number 42"),
            ("null", "null"),
            ("[\"a\"]", "an array"),
        ];
        for (text, found) in cases {
            let contents = format!("{{\"text\": {text}, \"label\": \"a\"}}\n");
            let (error, message) = failure("jsonl", contents.as_bytes());
            assert!(matches!(error, DataError::WrongType { .. }), "{error:?}");
            assert_names_line(
                &message,
                "jsonl",
                1,
                &["field 'text' must be a string", found],
            );
        }
    }

    #[test]
    fn a_label_that_is_not_a_string_or_an_integer_is_an_error_naming_the_line() {
        let cases = [
            ("{\"a\": 1}", "an object"),
            ("null", "null"),
            ("true", "the boolean true"),
            ("[1]", "an array"),
            ("1.5", "the number 1.5"),
        ];
        for (label, found) in cases {
            let contents = format!(
                "{{\"text\": \"ok\", \"label\": \"a\"}}\n{{\"text\": \"t\", \"label\": {label}}}\n"
            );
            let (_, message) = failure("jsonl", contents.as_bytes());
            assert_names_line(
                &message,
                "jsonl",
                2,
                &["field 'label' must be a string or an integer", found],
            );
        }
    }

    #[test]
    fn a_float_label_with_an_integral_value_is_rejected_with_a_hint() {
        let (_, message) = failure("jsonl", b"{\"text\": \"t\", \"label\": 1.0}\n");
        assert_names_line(
            &message,
            "jsonl",
            1,
            &["the number 1.0", "without a decimal point"],
        );
    }

    #[test]
    fn a_csv_row_with_the_wrong_number_of_fields_is_an_error_naming_the_line() {
        // The quoted newline makes row 2 span lines 2-3, so the bad row is on line 4.
        let too_many = b"text,label\n\"two\nlines\",a\nx,b,extra\n";
        let (error, message) = failure("csv", too_many);
        assert!(
            matches!(error, DataError::MalformedRow { line: 4, .. }),
            "{error:?}"
        );
        assert_names_line(&message, "csv", 4, &["expected 2 fields", "found 3"]);
        let too_few = b"text\tlabel\nok\ta\nonly text\n";
        let (_, message) = failure("tsv", too_few);
        assert_names_line(&message, "tsv", 3, &["expected 2 fields", "found 1"]);
    }

    #[test]
    fn a_missing_header_column_is_an_error_naming_it_and_listing_the_present_ones() {
        let (error, message) = failure("csv", b"sentence,label\nhello,a\n");
        assert!(
            matches!(error, DataError::MissingColumn { .. }),
            "{error:?}"
        );
        assert_names_line(
            &message,
            "csv",
            1,
            &["no column 'text'", "present: sentence, label"],
        );
        let (_, message) = failure("tsv", b"text\tclass\nhello\ta\n");
        assert_names_line(
            &message,
            "tsv",
            1,
            &["no column 'label'", "present: text, class"],
        );
    }

    #[test]
    fn a_file_without_examples_is_an_error_naming_the_file() {
        let cases: [(&str, &[u8]); 5] = [
            ("jsonl", b""),
            ("jsonl", b"\n  \n\r\n"),
            ("csv", b""),
            ("csv", b"text,label\n"),
            ("tsv", b"text\tlabel\n"),
        ];
        for (extension, contents) in cases {
            let (error, message) = failure(extension, contents);
            assert!(matches!(error, DataError::EmptyFile { .. }), "{error:?}");
            assert!(
                message.contains(&format!("examples.{extension}: no examples")),
                "{message}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_an_error_naming_the_line() {
        let cases: [(&str, &[u8], u64); 4] = [
            (
                "jsonl",
                b"{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"\xff\", \"label\": \"a\"}\n",
                2,
            ),
            ("csv", b"text,label\nok,a\nbad \xc3,a\n", 3),
            ("tsv", b"text\tlabel\nok\t\xe2\x82\n", 2),
            ("csv", b"te\xffxt,label\nok,a\n", 1),
        ];
        for (extension, contents, line) in cases {
            let (error, message) = failure(extension, contents);
            assert!(matches!(error, DataError::InvalidUtf8 { .. }), "{error:?}");
            assert_names_line(&message, extension, line, &["not valid UTF-8"]);
        }
    }

    #[test]
    fn arbitrary_bytes_are_read_or_rejected_without_panicking() {
        // Bytes drawn mostly from the characters that matter to the parsers.
        const ALPHABET: &[u8] = b"{}[]\":,\t\n\r\\ tx0.-labeltext\xff\xc3\xef\xbb\xbf";
        let mut rng = SeededRng::new(11);
        let dir = tempfile::tempdir().expect("temporary directory");
        for round in 0..300 {
            let len = rng.below(80);
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                .collect();
            if round % 3 == 0 {
                bytes.splice(0..0, b"text,label\n".iter().copied());
            }
            for extension in ["jsonl", "csv", "tsv"] {
                let path = dir.path().join(format!("fuzz.{extension}"));
                std::fs::write(&path, &bytes).expect("write");
                let _ = read_examples(&path, &FieldNames::default());
                let _ = read_texts(&path, "text");
            }
        }
    }
}
