//! No input may panic the parsers: arbitrary bytes, unicode, control characters, huge numbers.

use candor::serve::api::{ClassifyRequest, HfRequest, UncertaintyRequest};
use candor::serve::error::ApiError;
use candor::serve::extract::parse;
use candor::serve::inference::validate_texts;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_body_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse::<ClassifyRequest>(&bytes);
        let _ = parse::<UncertaintyRequest>(&bytes);
        let _ = parse::<HfRequest>(&bytes);
    }

    #[test]
    fn json_with_any_unicode_text_parses_or_is_rejected_cleanly(text in "\\PC*", k in any::<i64>(), samples in any::<u64>()) {
        let body = serde_json::json!({"inputs": [text.clone()], "top_k": k, "samples": samples}).to_string();
        let parsed = parse::<UncertaintyRequest>(body.as_bytes());
        if let Ok(req) = parsed {
            prop_assert_eq!(req.inputs.into_texts(), vec![text]);
        }
    }

    #[test]
    fn control_characters_and_huge_numbers_are_rejected_with_422(noise in "[\\x00-\\x1f]{0,20}", big in any::<f64>()) {
        let body = format!("{{\"inputs\": \"{noise}\", \"top_k\": {big}}}");
        if let Err(e) = parse::<ClassifyRequest>(body.as_bytes()) {
            prop_assert_eq!(e.status_and_kind().0.as_u16(), 422);
        }
    }

    #[test]
    fn validation_accepts_or_rejects_any_list_without_panicking(texts in proptest::collection::vec("\\PC{0,40}", 0..40)) {
        match validate_texts(&texts, 16) {
            Ok(()) => prop_assert!(!texts.is_empty() && texts.len() <= 16),
            Err(ApiError::TooManyInputs { .. }) => prop_assert!(texts.len() > 16),
            Err(e) => prop_assert_eq!(e.status_and_kind().0.as_u16(), 422),
        }
    }
}

#[test]
fn the_tokenizer_handles_any_unicode_without_panicking() {
    let classifier = candor::model::Classifier::load(&crate::common::fixture_model()).unwrap();
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&"\\PC{0,300}", |text| {
            if let Ok(e) = classifier.encoder.encode(&text, true) {
                prop_assert!(e.ids.len() <= classifier.encoder.max_length());
            }
            Ok(())
        })
        .unwrap();
}
