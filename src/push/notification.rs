//! What a push says, and what a provider's answer means.

use serde::{Deserialize, Serialize};

/// Characters of message text a push shows; providers cut long alerts anyway, and a lock screen
/// shows two lines.
pub const BODY_CHARS: usize = 120;

/// The title of pushes from admins and the system: the user talks to support, not a person.
pub const SUPPORT_TITLE: &str = "Support";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Ios,
    Android,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "ios" => Some(Platform::Ios),
            "android" => Some(Platform::Android),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Fcm,
    Apns,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Fcm => "fcm",
            Provider::Apns => "apns",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "fcm" => Some(Provider::Fcm),
            "apns" => Some(Provider::Apns),
            _ => None,
        }
    }
}

/// The content of one push, as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub title: String,
    pub body: String,
    /// The recipient's unread messages.
    pub badge: u64,
    pub conversation_id: u64,
    pub message_id: u64,
    /// Absent in pushes queued before pushes carried it.
    #[serde(default)]
    pub message_type: Option<events::MessageType>,
    /// The file an image or file message carries, so a notification can name the file, or size a
    /// picture's preview, before the app opens.
    #[serde(default)]
    pub attachment: Option<events::AttachedFile>,
}

impl Notification {
    /// What the app reads beside the alert, as JSON numbers and strings: the ids, the message's
    /// type, and for image and file messages `file_name`, `file_size`, `mime_type` and (images)
    /// `width` and `height`.
    pub fn custom_data(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut data = serde_json::Map::new();
        data.insert("conversation_id".into(), self.conversation_id.into());
        data.insert("message_id".into(), self.message_id.into());
        if let Some(kind) = self.message_type {
            data.insert("message_type".into(), kind.as_str().into());
        }
        if let Some(file) = &self.attachment {
            data.insert("file_name".into(), file.name.clone().into());
            data.insert("file_size".into(), file.size.into());
            data.insert("mime_type".into(), file.mime_type.clone().into());
            if let Some(width) = file.width {
                data.insert("width".into(), width.into());
            }
            if let Some(height) = file.height {
                data.insert("height".into(), height.into());
            }
        }
        data
    }

    /// The collapse key the providers get: a newer push of the conversation replaces the older
    /// one on the device.
    pub fn collapse_id(&self) -> String {
        format!("conversation-{}", self.conversation_id)
    }
}

/// The body for a message: its text cut to [`BODY_CHARS`] on a character boundary, or what kind
/// of attachment it carries.
pub fn body_of(message_type: events::MessageType, content: &str) -> String {
    match message_type {
        events::MessageType::Image => "Sent an image".to_string(),
        events::MessageType::File => "Sent a file".to_string(),
        events::MessageType::Text | events::MessageType::System => cut(content.trim(), BODY_CHARS),
    }
}

fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some(_) => {
            let end = text
                .char_indices()
                .nth(max_chars.saturating_sub(1))
                .map_or(text.len(), |(i, _)| i);
            format!("{}\u{2026}", text[..end].trim_end())
        }
    }
}

/// One push for one device.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub token: String,
    pub platform: Platform,
    pub notification: Notification,
}

/// What a provider made of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// The provider no longer knows the token: the device is removed.
    InvalidToken(String),
    /// A temporary failure (network, 429, 5xx); `after` is the provider's Retry-After.
    Retry {
        after: Option<std::time::Duration>,
        reason: String,
    },
    /// Refused for good; retrying would not help.
    Failed(String),
}

/// A provider's Retry-After in seconds, bounded (a provider asking for hours is not obeyed
/// beyond the retry budget).
pub fn retry_after(headers: &push_http::header::HeaderMap) -> Option<std::time::Duration> {
    headers
        .get(push_http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| std::time::Duration::from_secs(s.min(300)))
}

/// A failure the sender should try again: the request may not have arrived.
pub fn transport_failure(error: &push_http::Error) -> Outcome {
    Outcome::Retry {
        after: None,
        reason: format!("network: {}", without_url(error)),
    }
}

/// reqwest's errors name the URL, which for APNs holds the device token.
fn without_url(error: &push_http::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_request() {
        "request failed"
    } else {
        "failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_text_is_cut_on_a_character_boundary_with_an_ellipsis() {
        let text = "你好".repeat(100);
        let body = body_of(events::MessageType::Text, &text);
        assert_eq!(body.chars().count(), BODY_CHARS);
        assert!(body.ends_with('\u{2026}'));
        assert_eq!(body_of(events::MessageType::Text, " short "), "short");
        assert_eq!(
            body_of(events::MessageType::Text, &"a".repeat(BODY_CHARS)),
            "a".repeat(BODY_CHARS)
        );
    }

    #[test]
    fn attachments_say_what_they_are() {
        assert_eq!(
            body_of(events::MessageType::Image, "photo.jpg"),
            "Sent an image"
        );
        assert_eq!(body_of(events::MessageType::File, "a.pdf"), "Sent a file");
    }
}
