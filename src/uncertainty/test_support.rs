//! What the uncertainty modules' unit tests share.

/// Fails unless `actual` is within 1e-12 of `expected`.
pub fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-12,
        "expected {expected}, got {actual}"
    );
}
