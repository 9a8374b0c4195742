//! Sealing the text people typed: every conversation has a data key (AES-256-GCM), and the
//! fields of an event that hold what a person typed ([`events::personal_fields`]) are stored
//! encrypted under it, with the event's stream, sequence and type as associated data (a sealed
//! field cannot be moved to another event). The rest of the payload stays in the clear, so the
//! hash chain covers the stored (sealed) bytes and checking it never needs a key. Destroying a
//! conversation's data key erases that text from the log for good: its events then read with
//! the fields empty and `erased: true`.
//!
//! Data keys are stored wrapped by the master key (`CHAT_ENCRYPTION_KEY_FILE`, AES-256-GCM again)
//! when there is one, else as they are.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

/// The environment variable naming the master key file, as errors name it.
pub const KEY_FILE_VARIABLE: &str = "CHAT_ENCRYPTION_KEY_FILE";
/// The master key being rotated away from: it still opens data keys, never wraps new ones.
pub const PREVIOUS_KEY_FILE_VARIABLE: &str = "CHAT_ENCRYPTION_PREVIOUS_KEY_FILE";
/// Bytes of every key (AES-256).
const KEY_LEN: usize = 32;
/// The payload member holding the sealed fields.
const SEALED: &str = "sealed";
/// The payload member a reader sees when the data key is gone.
const ERASED: &str = "erased";

/// Why a key or a sealed payload could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The key that wraps every data key at rest.
pub struct MasterKey {
    id: String,
    key: LessSafeKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

impl MasterKey {
    /// Reads a key file: 32 random bytes in base64 (surrounding whitespace ignored), in a file
    /// only its owner may read or write (mode 0600 or stricter).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        Self::from_file_named(path, KEY_FILE_VARIABLE)
    }

    /// As [`MasterKey::from_file`], naming `variable` (or option) in errors.
    pub fn from_file_named(path: &Path, variable: &str) -> Result<Self, KeyError> {
        let fail = |why: String| KeyError(format!("{variable} ({}): {why}", path.display()));
        let metadata = std::fs::metadata(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        if !metadata.is_file() {
            return Err(fail("not a regular file".into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(fail(format!(
                    "mode {mode:04o} lets others read it; make it private (chmod 600)"
                )));
            }
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|_| fail("not base64 (make one with: openssl rand -base64 32)".into()))?;
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            fail(format!("holds {} bytes, a key is {KEY_LEN}", bytes.len()))
        })?;
        Ok(MasterKey::from_bytes(&bytes))
    }

    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        MasterKey {
            // Names the key in each wrapped data key without revealing it.
            id: hex::encode(&digest.as_ref()[..8]),
            key: aead_key(bytes),
        }
    }

    /// A short name of this key (from its SHA-256), stored beside every data key it wraps.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The data key `key` of a conversation, wrapped: base64 of nonce, ciphertext and tag.
    fn wrap(
        &self,
        conversation_id: u64,
        key_id: &str,
        key: &[u8; KEY_LEN],
    ) -> Result<String, KeyError> {
        let aad = wrap_aad(conversation_id, key_id);
        seal_bytes(&self.key, aad.as_bytes(), key.to_vec())
    }

    fn unwrap(
        &self,
        conversation_id: u64,
        key_id: &str,
        wrapped: &str,
    ) -> Result<[u8; KEY_LEN], KeyError> {
        let aad = wrap_aad(conversation_id, key_id);
        let plain = open_bytes(&self.key, aad.as_bytes(), wrapped).map_err(|_| {
            KeyError(format!(
                "the data key of conversation {conversation_id} does not unwrap with master key {}",
                self.id
            ))
        })?;
        plain.try_into().map_err(|_| {
            KeyError(format!(
                "the data key of conversation {conversation_id} is damaged"
            ))
        })
    }
}

/// One conversation's data key.
pub struct DataKey {
    pub id: String,
    key: LessSafeKey,
    raw: [u8; KEY_LEN],
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("id", &self.id).finish()
    }
}

/// A data key as its row stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDataKey {
    pub conversation_id: u64,
    pub key_id: String,
    /// The master key that wrapped it; None when stored unwrapped.
    pub master_key_id: Option<String>,
    /// Base64: the key itself, or (wrapped) nonce, ciphertext and tag.
    pub material: String,
}

impl DataKey {
    /// A new random key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut raw = [0u8; KEY_LEN];
        let mut id = [0u8; 16];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| KeyError("no random bytes".into()))?;
        aws_lc_rs::rand::fill(&mut id).map_err(|_| KeyError("no random bytes".into()))?;
        Ok(DataKey {
            id: hex::encode(id),
            key: aead_key(&raw),
            raw,
        })
    }

    /// The row that stores this key for `conversation_id`, wrapped by `master` when given.
    pub fn to_stored(
        &self,
        conversation_id: u64,
        master: Option<&MasterKey>,
    ) -> Result<StoredDataKey, KeyError> {
        Ok(StoredDataKey {
            conversation_id,
            key_id: self.id.clone(),
            master_key_id: master.map(|m| m.id().to_string()),
            material: match master {
                Some(master) => master.wrap(conversation_id, &self.id, &self.raw)?,
                None => BASE64.encode(self.raw),
            },
        })
    }

    /// The key a row stores, unwrapped by whichever of `masters` wrapped it.
    pub fn from_stored(stored: &StoredDataKey, masters: &[&MasterKey]) -> Result<Self, KeyError> {
        let damaged = || {
            KeyError(format!(
                "the data key of conversation {} is damaged",
                stored.conversation_id
            ))
        };
        let raw = match &stored.master_key_id {
            None => BASE64
                .decode(&stored.material)
                .map_err(|_| damaged())?
                .try_into()
                .map_err(|_| damaged())?,
            Some(wrapped_by) => match masters.iter().find(|m| m.id() == wrapped_by) {
                Some(master) => {
                    master.unwrap(stored.conversation_id, &stored.key_id, &stored.material)?
                }
                None if masters.is_empty() => {
                    return Err(KeyError(format!(
                        "data keys are wrapped by master key {wrapped_by}; set {KEY_FILE_VARIABLE} \
                         to its file"
                    )));
                }
                None => {
                    let held: Vec<&str> = masters.iter().map(|m| m.id()).collect();
                    return Err(KeyError(format!(
                        "data keys are wrapped by master key {wrapped_by}, but {KEY_FILE_VARIABLE} \
                         (and {PREVIOUS_KEY_FILE_VARIABLE}) holds master key {}",
                        held.join(" and ")
                    )));
                }
            },
        };
        Ok(DataKey {
            id: stored.key_id.clone(),
            key: aead_key(&raw),
            raw,
        })
    }
}

/// What binds a sealed payload to its place in the log.
pub fn payload_aad(stream_type: &str, stream_id: &str, sequence: u64, event_type: &str) -> String {
    format!("chatd event\n{stream_type}\n{stream_id}\n{sequence}\n{event_type}")
}

/// Moves the personal fields of `payload` (an event of `event_type`) into one sealed member,
/// leaving each of them an empty string. Returns whether anything was sealed (an event without
/// typed text is stored as it is).
pub fn seal_payload(
    payload: &mut Value,
    event_type: &str,
    aad: &str,
    key: &DataKey,
) -> Result<bool, KeyError> {
    let mut sealed = Map::new();
    for pointer in events::personal_fields(event_type) {
        if let Some(field) = payload.pointer_mut(pointer)
            && let Value::String(text) = field
        {
            sealed.insert((*pointer).to_string(), Value::String(std::mem::take(text)));
        }
    }
    if sealed.is_empty() {
        return Ok(false);
    }
    let fields: Vec<Value> = sealed.keys().cloned().map(Value::String).collect();
    let plain = serde_json::to_vec(&sealed).map_err(|e| KeyError(format!("sealing: {e}")))?;
    let data = seal_bytes(&key.key, aad.as_bytes(), plain)?;
    let Value::Object(members) = payload else {
        return Err(KeyError("an event payload is a JSON object".into()));
    };
    let mut envelope = Map::new();
    envelope.insert("key".into(), Value::String(key.id.clone()));
    envelope.insert("fields".into(), Value::Array(fields));
    envelope.insert("data".into(), Value::String(data));
    members.insert(SEALED.into(), Value::Object(envelope));
    Ok(true)
}

/// Whether a stored payload (JSON text) has sealed fields. A JSON string cannot hold an
/// unescaped quote, so typed text never looks like the member's name.
pub fn is_sealed(payload: &str) -> bool {
    payload.contains("\"sealed\":")
}

/// Puts the sealed fields of `payload` back in place with `key`; with no key (destroyed by an
/// erasure) they stay empty and the payload says `erased: true`. A sealed member that does not
/// open with its own key is an error: the row was altered.
pub fn open_payload(payload: &mut Value, aad: &str, key: Option<&DataKey>) -> Result<(), KeyError> {
    let Some(Value::Object(members)) = Some(&mut *payload) else {
        return Ok(());
    };
    let Some(envelope) = members.remove(SEALED) else {
        return Ok(());
    };
    let Some(key) = key else {
        members.insert(ERASED.into(), Value::Bool(true));
        return Ok(());
    };
    let named = envelope
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if named != key.id {
        return Err(KeyError(format!(
            "sealed under data key {named}, but the conversation's key is {}",
            key.id
        )));
    }
    let data = envelope
        .get("data")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let plain = open_bytes(&key.key, aad.as_bytes(), data)
        .map_err(|_| KeyError("the sealed fields do not open: the row was altered".into()))?;
    let fields: Map<String, Value> = serde_json::from_slice(&plain)
        .map_err(|e| KeyError(format!("the sealed fields are not JSON: {e}")))?;
    for (pointer, value) in fields {
        if let Some(field) = payload.pointer_mut(&pointer) {
            *field = value;
        }
    }
    Ok(())
}

fn aead_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    // A 32-byte key is exactly what AES-256-GCM takes: the constructor cannot refuse it.
    match UnboundKey::new(&AES_256_GCM, bytes) {
        Ok(key) => LessSafeKey::new(key),
        Err(_) => unreachable!("AES-256-GCM takes a 32-byte key"),
    }
}

fn wrap_aad(conversation_id: u64, key_id: &str) -> String {
    format!("chatd data key\n{conversation_id}\n{key_id}")
}

/// Base64 of a random nonce, the ciphertext and the tag.
fn seal_bytes(key: &LessSafeKey, aad: &[u8], mut data: Vec<u8>) -> Result<String, KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KeyError("no random bytes".into()))?;
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut data,
    )
    .map_err(|_| KeyError("sealing failed".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + data.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&data);
    Ok(BASE64.encode(out))
}

fn open_bytes(key: &LessSafeKey, aad: &[u8], sealed: &str) -> Result<Vec<u8>, KeyError> {
    let bytes = BASE64
        .decode(sealed)
        .map_err(|_| KeyError("not base64".into()))?;
    if bytes.len() < NONCE_LEN {
        return Err(KeyError("too short".into()));
    }
    let (nonce, data) = bytes.split_at(NONCE_LEN);
    let nonce =
        Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError("bad nonce".into()))?;
    let mut data = data.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut data)
        .map_err(|_| KeyError("does not open".into()))?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(content: &str) -> Value {
        json!({
            "message_id": 7, "sender": {"id": 1, "role": "user"}, "message_type": "file",
            "content": content, "file_id": "ab", "client_msg_id": null,
            "attachment": {"name": "invoice.pdf", "size": 10, "mime_type": "application/pdf"}
        })
    }

    #[test]
    fn sealed_fields_are_empty_in_the_stored_payload_and_come_back_with_the_key() {
        let key = DataKey::generate().unwrap();
        let aad = payload_aad("conversation", "3", 2, "MessageSent");
        let mut payload = message("my card is 4111");
        assert!(seal_payload(&mut payload, "MessageSent", &aad, &key).unwrap());
        let stored = payload.to_string();
        assert!(
            !stored.contains("4111") && !stored.contains("invoice"),
            "{stored}"
        );
        assert!(is_sealed(&stored));
        assert_eq!(payload["content"], "");
        assert_eq!(payload["message_id"], 7, "ids stay in the clear");

        let mut read: Value = serde_json::from_str(&stored).unwrap();
        open_payload(&mut read, &aad, Some(&key)).unwrap();
        assert_eq!(read, message("my card is 4111"));
    }

    #[test]
    fn without_the_key_the_fields_stay_empty_and_the_payload_says_erased() {
        let key = DataKey::generate().unwrap();
        let aad = payload_aad("conversation", "3", 2, "MessageSent");
        let mut payload = message("secret");
        seal_payload(&mut payload, "MessageSent", &aad, &key).unwrap();
        open_payload(&mut payload, &aad, None).unwrap();
        assert_eq!(payload["content"], "");
        assert_eq!(payload["attachment"]["name"], "");
        assert_eq!(payload["erased"], true);
        assert!(payload.get("sealed").is_none());
    }

    #[test]
    fn a_sealed_payload_moved_to_another_event_or_altered_does_not_open() {
        let key = DataKey::generate().unwrap();
        let aad = payload_aad("conversation", "3", 2, "MessageSent");
        let mut payload = message("secret");
        seal_payload(&mut payload, "MessageSent", &aad, &key).unwrap();
        let elsewhere = payload_aad("conversation", "4", 2, "MessageSent");
        assert!(open_payload(&mut payload.clone(), &elsewhere, Some(&key)).is_err());
        let other = DataKey::generate().unwrap();
        assert!(open_payload(&mut payload.clone(), &aad, Some(&other)).is_err());
    }

    #[test]
    fn events_without_typed_text_are_stored_as_they_are() {
        let key = DataKey::generate().unwrap();
        let mut closed = json!({"by": {"id": 1, "role": "admin"}});
        assert!(!seal_payload(&mut closed, "ConversationClosed", "x", &key).unwrap());
        let mut feedback = json!({"rating": 5, "comment": null, "by": {"id": 1, "role": "user"}});
        assert!(!seal_payload(&mut feedback, "FeedbackGiven", "x", &key).unwrap());
        assert_eq!(feedback["comment"], Value::Null);
    }

    #[test]
    fn a_data_key_round_trips_through_its_row_wrapped_or_not() {
        let key = DataKey::generate().unwrap();
        let master = MasterKey::from_bytes(&[7; 32]);
        let wrapped = key.to_stored(9, Some(&master)).unwrap();
        assert_eq!(wrapped.master_key_id.as_deref(), Some(master.id()));
        assert_eq!(
            DataKey::from_stored(&wrapped, &[&master]).unwrap().raw,
            key.raw
        );
        let plain = key.to_stored(9, None).unwrap();
        assert_eq!(DataKey::from_stored(&plain, &[]).unwrap().raw, key.raw);

        let other = MasterKey::from_bytes(&[8; 32]);
        let refused = DataKey::from_stored(&wrapped, &[&other]).unwrap_err();
        assert!(refused.0.contains(KEY_FILE_VARIABLE), "{refused}");
        assert!(DataKey::from_stored(&wrapped, &[]).is_err());
        // Either of two master keys opens what it wrapped.
        assert!(DataKey::from_stored(&wrapped, &[&other, &master]).is_ok());
        // Same id, different bytes: the tag says so.
        let forged = MasterKey {
            id: master.id.clone(),
            key: aead_key(&[8; 32]),
        };
        assert!(DataKey::from_stored(&wrapped, &[&forged]).is_err());
    }

    #[test]
    fn a_key_file_must_be_private_base64_of_32_bytes() {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("chatd-key-{}", DataKey::generate().unwrap().id));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str, mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let good = BASE64.encode([1u8; 32]);
        assert!(MasterKey::from_file(&write("good", &format!("{good}\n"), 0o600)).is_ok());
        assert!(MasterKey::from_file(&write("owner-only", &good, 0o400)).is_ok());
        for (name, text, mode, says) in [
            ("open", good.as_str(), 0o644, "chmod 600"),
            ("short", "AAAA", 0o600, "holds 3 bytes"),
            ("text", "not a key!", 0o600, "not base64"),
        ] {
            let error = MasterKey::from_file(&write(name, text, mode)).unwrap_err();
            assert!(
                error.0.starts_with(KEY_FILE_VARIABLE) && error.0.contains(says),
                "{error}"
            );
        }
        let missing = MasterKey::from_file(&dir.join("missing")).unwrap_err();
        assert!(missing.0.contains("cannot read it"), "{missing}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
