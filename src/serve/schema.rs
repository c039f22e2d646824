//! The parts of the OpenAPI document the derives cannot say: every
//! constraint the server enforces on a request is stated here, so that a
//! client (or a property-based tester) that follows the document is never
//! refused, and one that does not is.

use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{OpenApi, RefOr};

use crate::uncertainty::selective::Score;

/// The schema of `inputs`: a text, or 1 to 64 (the default `--max-inputs`)
/// texts, each with something besides white space. The pattern's `\s` is
/// JSON Schema's (ECMA-262's), which lacks U+0085, named beside it so that
/// the document refuses what [`super::inference::is_blank`] refuses.
pub fn inputs() -> Schema {
    let text = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .pattern(Some(r"^[^\u0000]*[^\s\u0000\u0085][^\u0000]*$"))
    };
    let one_of = OneOfBuilder::new()
        .item(text())
        .item(
            ArrayBuilder::new()
                .items(text())
                .min_items(Some(1))
                .max_items(Some(64)),
        )
        .description(Some(
            "A text, or a list of texts (at most the server's --max-inputs, 64 by default); none may be empty, only white space, or hold NUL",
        ))
        .build();
    Schema::OneOf(one_of)
}

/// `abstain` on `/v1/classify`: one pass has no mutual information.
pub fn abstain_deterministic() -> Schema {
    abstain(&[
        Score::MaxProbability,
        Score::PredictiveEntropy,
        Score::Margin,
    ])
}

/// `abstain` on `/v1/classify/uncertainty`: any score.
pub fn abstain_sampled() -> Schema {
    abstain(&Score::ALL)
}

/// `true` (the model's default policy, which the model must have), `false`,
/// or a policy naming one of `scores` with exactly one of a threshold and a
/// coverage.
fn abstain(scores: &[Score]) -> Schema {
    let names: Vec<serde_json::Value> = scores
        .iter()
        .map(|s| serde_json::to_value(s).expect("a score serializes"))
        .collect();
    let score = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names.clone()))
    };
    let nothing = || ObjectBuilder::new().schema_type(Type::Null);
    let threshold = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("score", score())
        .property("threshold", ObjectBuilder::new().schema_type(Type::Number))
        .property("coverage", nothing())
        .required("score")
        .required("threshold")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some(
            "Abstain when the score is beyond the threshold: above it for entropy and mutual information, below it for max probability and margin",
        ));
    let coverage = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("score", score())
        .property(
            "coverage",
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0))
                .maximum(Some(1)),
        )
        .property("threshold", nothing())
        .required("score")
        .required("coverage")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some(
            "Abstain on the least confident 1 − coverage share, as measured on the model's calibration split",
        ));
    let one_of = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null).description(Some(
            "null, as absent: the model's default policy when it has one",
        )))
        .item(ObjectBuilder::new().schema_type(Type::Boolean).description(Some(
            "true: the model's default policy (422 when its calibration.json has none); false: never abstain",
        )))
        .item(threshold)
        .item(coverage)
        .description(Some(
            "Abstention: true for the model's default policy (used when absent, if the model has one), false for none, or a policy",
        ))
        .build();
    Schema::OneOf(one_of)
}

/// A miscoverage `alpha`: strictly between 0 and 1.
pub fn alpha() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Number, Type::Null]))
        .exclusive_minimum(Some(0))
        .exclusive_maximum(Some(1))
        .description(Some(
            "Return a conformal prediction_set holding the true label with probability at least 1 − alpha, e.g. 0.1 (needs the model's calibration.json)",
        ))
        .into()
}

/// A seed: any unsigned 64-bit integer.
pub fn seed() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .minimum(Some(0))
        .maximum(Some(u64::MAX))
        .description(Some(
            "Seed of the dropout masks, 0 to 2^64 − 1; the same input and seed give bit-identical output. Random when absent (and returned).",
        ))
        .into()
}

/// What the derives leave out of the document as a whole: `top_layers`
/// goes with `mode: "top"` only.
pub fn complete(mut doc: OpenApi) -> OpenApi {
    let uncertainty = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("UncertaintyRequest"));
    if let Some(RefOr::T(Schema::Object(request))) = uncertainty {
        let condition = serde_json::json!({"required": ["top_layers"], "properties": {"top_layers": {"type": "integer"}}});
        let then =
            serde_json::json!({"required": ["mode"], "properties": {"mode": {"const": "top"}}});
        // utoipa models no `if`/`then`; extensions are written out as given.
        request.extensions = Some(Extensions::from_iter([("if", condition), ("then", then)]));
    }
    doc
}

#[cfg(test)]
mod tests {
    fn parameter_pattern(doc: &serde_json::Value, path: &str, name: &str) -> Option<String> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)?["schema"]["pattern"]
            .as_str()
            .map(str::to_string)
    }

    #[test]
    fn the_document_states_the_review_cursor_the_store_reads() {
        let doc = serde_json::to_value(crate::serve::openapi()).unwrap();
        assert_eq!(
            parameter_pattern(&doc, "/v1/review-queue", "after").as_deref(),
            Some(crate::store::AFTER_PATTERN)
        );
    }

    #[test]
    fn top_layers_goes_with_mode_top_in_the_document() {
        let doc = serde_json::to_value(crate::serve::openapi()).unwrap();
        let request = &doc["components"]["schemas"]["UncertaintyRequest"];
        assert_eq!(request["then"]["properties"]["mode"]["const"], "top");
        assert_eq!(request["if"]["required"][0], "top_layers");
    }
}
