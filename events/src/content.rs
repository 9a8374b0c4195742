//! Text rules shared by messages and feedback: limits and control-character removal.

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
/// Ids in one read receipt.
pub const MAX_READ_IDS_PER_COMMAND: usize = 1000;

/// Removes control characters (as `char::is_control` sees them) except newline and tab.
/// Nothing else is changed: no trimming, no escaping (every surface renders text as text).
pub fn sanitize_content(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// Chars of `s` once surrounding whitespace is trimmed.
pub(crate) fn trimmed_len(s: &str) -> usize {
    s.trim().chars().count()
}
