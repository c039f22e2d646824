//! `GET /`: the playground, one self-contained page compiled into the
//! binary (no CDN, nothing to build): classify and sample texts, see the
//! probabilities with their spread, correct answers, and label the review
//! queue from the keyboard. It holds no data, so it loads without the API
//! key; the calls it makes send the key typed into it.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("playground.html");

/// The page only talks to this server, and only its own inline script runs.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                      connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

/// The playground page.
#[utoipa::path(get, path = "/", responses((status = 200, description = "The playground (HTML)")))]
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}
