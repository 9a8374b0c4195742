//! Text rules shared by messages and feedback: limits, and removal of control and
//! bidirectional formatting characters.

/// Largest id the contract allows (ids stay below 2^53, safe in JavaScript and Swift).
pub const MAX_ID: u64 = (1 << 53) - 1;
/// Message content, counted in chars after trimming.
pub const MAX_CONTENT_CHARS: usize = 5000;
/// `file_id` of an image or file message.
pub const MAX_FILE_ID_CHARS: usize = 255;
/// An upload's original file name, in chars.
pub const MAX_FILE_NAME_CHARS: usize = 255;
/// `client_msg_id`, the client's idempotency key.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 64;
/// Feedback comment, counted in chars after trimming.
pub const MAX_FEEDBACK_COMMENT_CHARS: usize = 1000;
/// The staff's reason for an erasure, in chars after trimming.
pub const MAX_ERASURE_REASON_CHARS: usize = 500;
/// The staff's reason for removing a message, in chars after trimming.
pub const MAX_DELETION_REASON_CHARS: usize = 500;
/// Ids in one read receipt.
pub const MAX_READ_IDS_PER_COMMAND: usize = 1000;

/// Removes control characters (as `char::is_control` sees them) except newline and tab, and
/// every Unicode bidirectional embedding, override and isolate ([`is_bidi_control`]).
/// Nothing else is changed: no trimming, no escaping (every surface renders text as text).
///
/// All of them go, not only the unbalanced ones: a balanced override still reverses what it
/// encloses (an account number, a link, a file name inside the message), and people typing
/// chat do not enter these characters; renderers choose each message's direction from its
/// letters. The marks (U+200E, U+200F, U+061C) stay: right-to-left writers use them, and they
/// reorder nothing on their own. A pure function of the text, so what is decided is what is
/// logged and replayed.
pub fn sanitize_content(raw: &str) -> String {
    raw.chars()
        .filter(|c| (!c.is_control() || *c == '\n' || *c == '\t') && !is_bidi_control(*c))
        .collect()
}

/// The bidirectional formatting characters that open or close a directional context:
/// embeddings and overrides (U+202A..=U+202E) and isolates (U+2066..=U+2069). An unclosed one
/// reorders whatever a page shows after it.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// [`is_bidi_control`], and the invisible direction marks (left-to-right U+200E,
/// right-to-left U+200F, Arabic letter U+061C): nothing a name or an identifier needs.
pub fn is_bidi_format(c: char) -> bool {
    is_bidi_control(c) || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Chars of `s` once surrounding whitespace is trimmed.
pub(crate) fn trimmed_len(s: &str) -> usize {
    s.trim().chars().count()
}
