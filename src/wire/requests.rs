//! The request shapes two transports share by contract: a message sent over REST or over
//! Socket.IO has the same fields.

use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SendMessageRequest {
    /// The text (`content` is accepted too).
    pub message: Option<String>,
    pub content: Option<String>,
    /// `text` (default), `image` or `file`.
    #[schema(pattern = "^(text|image|file)$")]
    pub message_type: Option<String>,
    /// Required for image and file messages.
    pub file_id: Option<String>,
    /// Users: default is their active conversation (opened when they have none). Admins: required.
    pub conversation_id: Option<u64>,
    /// At most 64 characters; a retry with the same value returns the original message.
    pub client_msg_id: Option<String>,
    /// Users: must be their own.
    pub user_id: Option<u64>,
}
