//! The path every prediction takes: validate texts, tokenize off the async
//! runtime, queue for the engine and wait, all within the request timeout.

use std::time::Instant;

use super::engine::{Timed, Work};
use super::error::ApiError;
use super::models::ServedModel;
use super::AppState;
use crate::model::{TokenizerError, Truncation};

/// Checks the inputs of a request before any work is done.
pub fn validate_texts(texts: &[String], max_inputs: usize) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::Validation("\"inputs\" must not be empty".into()));
    }
    if texts.len() > max_inputs {
        return Err(ApiError::TooManyInputs {
            count: texts.len(),
            max: max_inputs,
        });
    }
    if let Some(i) = texts.iter().position(|t| is_blank(t)) {
        return Err(ApiError::Validation(format!("input {i} is empty")));
    }
    Ok(())
}

/// Whether `text` holds nothing but white space: Unicode's (as Rust's
/// `trim`) and U+FEFF, which JSON Schema's `\s` counts too.
pub fn is_blank(text: &str) -> bool {
    text.chars().all(|c| c.is_whitespace() || c == '\u{feff}')
}

/// Tokenizes on the blocking pool, so a long text never stalls a tokio worker.
///
/// A text over the character limit is cut to it first, at the end the
/// model will read (it reads only so many tokens anyway), unless truncation
/// is refused, so no request makes the tokenizer walk a megabyte; and only
/// as many requests tokenize at once as there are cores, so memory stays
/// bounded.
pub async fn tokenize(
    state: &AppState,
    model: &ServedModel,
    mut texts: Vec<String>,
    truncation: impl Into<Truncation>,
) -> Result<Vec<Vec<u32>>, ApiError> {
    let truncation = truncation.into();
    let max_chars = state.settings.limits.max_input_chars;
    for (index, text) in texts.iter_mut().enumerate() {
        // Only a text over the limit is walked further than the limit.
        let Some((limit, _)) = text.char_indices().nth(max_chars) else {
            continue;
        };
        let chars = || max_chars + text[limit..].chars().count();
        match truncation {
            Truncation::KeepStart => text.truncate(limit),
            Truncation::Refuse => {
                return Err(ApiError::InputTooManyChars {
                    index,
                    chars: chars(),
                    max: max_chars,
                })
            }
            Truncation::KeepEnd => {
                let over = chars() - max_chars;
                let (cut, _) = text.char_indices().nth(over).unwrap_or_default();
                text.drain(..cut);
            }
        }
    }
    let _permit = state
        .tokenizer_permits
        .acquire()
        .await
        .map_err(|_| ApiError::Unavailable("the server is shutting down".into()))?;
    let classifier = model.classifier.clone();
    let started = Instant::now();
    let rows = tokio::task::spawn_blocking(move || {
        texts
            .iter()
            .enumerate()
            .map(
                |(index, t)| match classifier.encoder.encode(t, truncation) {
                    Ok(e) => Ok(e.ids),
                    Err(TokenizerError::TooLong { tokens, max }) => {
                        Err(ApiError::InputTooLong { index, tokens, max })
                    }
                    Err(e) => Err(ApiError::Internal(e.to_string())),
                },
            )
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::Internal(format!("tokenizer task failed: {e}")))??;
    tracing::Span::current().record("tokenize_ms", started.elapsed().as_secs_f64() * 1e3);
    Ok(rows)
}

/// Queues work for the engine and waits for its answer; the time it waited
/// and was computed goes to the request's span.
pub async fn compute<W: Work>(
    state: &AppState,
    model: &ServedModel,
    work: W,
) -> Result<W::Answer, ApiError> {
    let engine = &model.engine;
    let (cost, budget) = (work.cost(model.layers()), engine.cost_budget());
    if cost > budget {
        return Err(ApiError::TooCostly {
            cost,
            max: budget,
            timeout_ms: state.settings.limits.request_timeout.as_millis() as u64,
        });
    }
    let pending = work.queue_on(engine)?;
    state
        .metrics
        .queue_depth
        .with_label_values(&[&model.name])
        .set(engine.queue_depth() as i64);
    let Timed {
        answer,
        queued,
        inference,
    } = pending.await?;
    let span = tracing::Span::current();
    span.record("queue_ms", queued.as_secs_f64() * 1e3);
    span.record("inference_ms", inference.as_secs_f64() * 1e3);
    Ok(answer)
}

/// Runs `f` within the request timeout; past it the client gets 503.
pub async fn within_deadline<T>(
    state: &AppState,
    f: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let limit = state.settings.limits.request_timeout;
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| ApiError::Timeout(limit.as_millis() as u64))?
}

#[cfg(test)]
mod tests {
    use super::is_blank;

    #[test]
    fn blank_is_what_the_documented_pattern_refuses() {
        // Unicode's white space, U+0085 included (the pattern names it), and U+FEFF (JSON Schema's \s has it).
        for blank in [
            "",
            " ",
            "\t\n",
            "\u{85}",
            "\u{a0}\u{3000}",
            "\u{feff}",
            "\u{2028}",
        ] {
            assert!(is_blank(blank), "{blank:?}");
        }
        for text in ["a", " a ", "\u{200b}", "\u{85}x"] {
            assert!(!is_blank(text), "{text:?}");
        }
    }
}
