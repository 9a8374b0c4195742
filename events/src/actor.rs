//! Who acts: the role and identity of the caller, as the session names them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ConversationError;

/// The caller's role. `System` is the server itself (automated messages); it may do what an
/// admin may do and is the only role that may send [`crate::MessageType::System`] messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
    Auditor,
    System,
}

impl Role {
    /// The wire and storage spelling: `user`, `admin`, `auditor`, `system`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::System => "system",
        }
    }

    /// Admins and the system act for the support side of a conversation.
    pub fn is_staff(&self) -> bool {
        matches!(self, Role::Admin | Role::System)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ConversationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            "auditor" => Ok(Role::Auditor),
            "system" => Ok(Role::System),
            other => Err(ConversationError::Validation(format!(
                "unknown role `{other}` (expected user, admin, auditor or system)"
            ))),
        }
    }
}

/// The caller of a command, as the authenticated session describes them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub id: u64,
    pub role: Role,
    /// `user_uuid_42` for users, the login name for admins.
    pub identifier: String,
}

impl Actor {
    pub fn new(id: u64, role: Role, identifier: impl Into<String>) -> Self {
        Self {
            id,
            role,
            identifier: identifier.into(),
        }
    }
}
