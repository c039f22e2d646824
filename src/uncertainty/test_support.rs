//! What the uncertainty modules' unit tests share.

/// Fails unless `actual` is within `tolerance` of `expected`.
pub fn assert_within(actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() < tolerance,
        "expected {expected} (within {tolerance}), got {actual}"
    );
}

/// Fails unless `actual` is within 1e-12 of `expected`.
pub fn assert_close(actual: f64, expected: f64) {
    assert_within(actual, expected, 1e-12);
}
