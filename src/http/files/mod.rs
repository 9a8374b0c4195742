//! Attachments over HTTP: `POST /api/chat/upload` (multipart, [`upload`]) and the download
//! route behind `file_url` ([`download`]).
//!
//! The upload route checks the app signature itself: the signature covers the SHA-256 of the raw
//! multipart bytes, which is only known once they have streamed by, and the body may be far
//! larger than the JSON routes' 64 KiB. What can be checked without the body (X-Timestamp,
//! X-Signature present, the session, the caller's uploads in progress) is checked before it is
//! read. The size limit, an idle timeout between the body's pieces and an overall deadline are
//! enforced while streaming, so an oversized, stalled or trickling upload is cut off, never
//! buffered whole or held open.

pub(super) mod download;
pub(super) mod upload;

use axum::routing::{get, post};

pub use upload::{UploadView, read_whole_form};

use crate::app::App;

pub fn router() -> axum::Router<App> {
    axum::Router::new()
        .route("/api/chat/upload", post(upload::upload))
        .route(
            "/uploads/chat/{year}/{month}/{day}/{name}",
            get(download::download),
        )
}

#[cfg(test)]
mod tests {
    use super::download::content_disposition;

    #[test]
    fn a_client_name_never_breaks_the_header() {
        assert_eq!(
            content_disposition(false, "报告 \"final\".pdf"),
            "attachment; filename=\"__ _final_.pdf\"; \
             filename*=UTF-8''%E6%8A%A5%E5%91%8A%20%22final%22.pdf"
        );
        assert_eq!(
            content_disposition(true, "cat.png"),
            "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png"
        );
    }
}
