//! Attachments: where their bytes live, what they are, and the links that serve them.
//!
//! Bytes live in an object store: a directory under `CHAT_DATA_DIR` by default, an S3-compatible
//! bucket when `CHAT_S3_BUCKET` is set (so that several nodes share files). Both go through the
//! one `object_store` interface. A client's file name never becomes a path: the path is
//! `uploads/chat/YYYY/MM/DD/<file_id>.<ext>`, with the extension of the detected type.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::Sha256;

use crate::config::Config;
use events::MessageType;

/// How long a signed link stays valid at least. Links are stable within a UTC day (the expiry
/// is rounded up to the day's end, then a day more), so an image cache on the phone (URLCache,
/// Kingfisher, SDWebImage) sees the same URL for a file all day and downloads it once.
const LINK_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const LINK_STEP_SECS: i64 = 24 * 3600;

/// What an upload turned out to be, decided from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectedType {
    pub mime_type: &'static str,
    pub extension: &'static str,
    /// The kind of message that may carry it.
    pub kind: MessageType,
}

/// The allow-list: images JPEG, PNG, GIF, WebP, HEIC; files PDF, plain text, ZIP.
pub fn detect(bytes: &[u8]) -> Option<DetectedType> {
    let image = |mime_type, extension| DetectedType {
        mime_type,
        extension,
        kind: MessageType::Image,
    };
    let file = |mime_type, extension| DetectedType {
        mime_type,
        extension,
        kind: MessageType::File,
    };
    match infer::get(bytes).map(|t| t.mime_type()) {
        Some("image/jpeg") => Some(image("image/jpeg", "jpg")),
        Some("image/png") => Some(image("image/png", "png")),
        Some("image/gif") => Some(image("image/gif", "gif")),
        Some("image/webp") => Some(image("image/webp", "webp")),
        Some("image/heif" | "image/heic") => Some(image("image/heic", "heic")),
        Some("application/pdf") => Some(file("application/pdf", "pdf")),
        Some("application/zip") => Some(file("application/zip", "zip")),
        Some(_) => None,
        None if is_plain_text(bytes) => Some(file("text/plain", "txt")),
        None => None,
    }
}

/// UTF-8 without control characters other than whitespace.
fn is_plain_text(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && std::str::from_utf8(bytes).is_ok_and(|text| {
            text.chars()
                .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
        })
}

/// The MIME types a client may declare for a detected type (browsers and phones say
/// `application/octet-stream` when they do not know, which declares nothing).
pub fn declared_matches(declared: &str, detected: &DetectedType) -> bool {
    let declared = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if declared.is_empty() || declared == "application/octet-stream" {
        return true;
    }
    match detected.mime_type {
        "image/jpeg" => matches!(
            declared.as_str(),
            "image/jpeg" | "image/jpg" | "image/pjpeg"
        ),
        "image/heic" => matches!(
            declared.as_str(),
            "image/heic" | "image/heif" | "image/heic-sequence" | "image/heif-sequence"
        ),
        "application/zip" => matches!(
            declared.as_str(),
            "application/zip" | "application/x-zip-compressed" | "multipart/x-zip"
        ),
        other => declared == other,
    }
}

/// Where the bytes of uploads live.
#[derive(Clone)]
pub struct FileStore {
    store: Arc<dyn ObjectStore>,
    /// `local directory` or `s3 bucket NAME`, for logs and /readyz.
    pub description: String,
}

impl FileStore {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        match &config.s3_bucket {
            Some(bucket) => {
                // Credentials, region and endpoint come from the usual AWS_* variables.
                let mut builder =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(region) = &config.s3_region {
                    builder = builder.with_region(region);
                }
                if let (Some(key), Some(secret)) =
                    (&config.s3_access_key_id, &config.s3_secret_access_key)
                {
                    builder = builder
                        .with_access_key_id(key)
                        .with_secret_access_key(secret);
                }
                if let Some(endpoint) = &config.s3_endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                let store = builder.build().context("configuring the S3 file store")?;
                Ok(FileStore {
                    store: Arc::new(store),
                    description: format!("s3 bucket {bucket}"),
                })
            }
            None => {
                std::fs::create_dir_all(&config.data_dir).with_context(|| {
                    format!("creating the data directory {}", config.data_dir.display())
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&config.data_dir)
                    .context("opening the local file store")?;
                Ok(FileStore {
                    store: Arc::new(store),
                    description: "local directory".into(),
                })
            }
        }
    }

    pub async fn put(&self, path: &str, bytes: Bytes) -> object_store::Result<()> {
        self.store
            .put(&StorePath::from(path), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
    }

    pub async fn delete(&self, path: &str) -> object_store::Result<()> {
        self.store.delete(&StorePath::from(path)).await
    }

    pub async fn get(&self, path: &str) -> object_store::Result<object_store::GetResult> {
        self.store.get(&StorePath::from(path)).await
    }
}

/// Signed, expiring links to stored files: what `file_url` holds, so that an image view on the
/// phone loads a file without headers.
#[derive(Clone)]
pub struct FileLinks {
    base: String,
    key: [u8; 32],
}

impl FileLinks {
    /// `public_base` without a trailing slash; the key is derived from the app secret, so every
    /// node signs and checks alike.
    pub fn new(public_base: &str, app_secret: &str) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(b"chatd file links v1");
        FileLinks {
            base: public_base.trim_end_matches('/').to_string(),
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// The public URL of `path`, signed until at least a day from `now_secs`.
    pub fn url(&self, path: &str, now_secs: i64) -> String {
        let expires =
            (now_secs / LINK_STEP_SECS + 1) * LINK_STEP_SECS + LINK_LIFETIME.as_secs() as i64;
        let signature = self.signature(path, expires);
        format!(
            "{}/{}?expires={expires}&signature={signature}",
            self.base,
            path.trim_start_matches('/')
        )
    }

    /// Whether `signature` signs `path` until `expires`, and that is still ahead of `now_secs`.
    pub fn verify(&self, path: &str, expires: i64, signature: &str, now_secs: i64) -> bool {
        if expires < now_secs {
            return false;
        }
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        self.mac(path, expires).verify_slice(&given).is_ok()
    }

    fn signature(&self, path: &str, expires: i64) -> String {
        hex::encode(self.mac(path, expires).finalize().into_bytes())
    }

    fn mac(&self, path: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(path.trim_start_matches('/').as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }
}

/// Uploads past their first bytes handled at once by one node: each is held in memory up to
/// the size limit, so this bounds what uploads can take.
const UPLOADS_IN_FLIGHT: usize = 16;

/// What the upload and download routes share.
pub struct Attachments {
    pub store: FileStore,
    pub links: FileLinks,
    pub max_upload_bytes: u64,
    pub max_image_pixels: u64,
    pub in_flight: tokio::sync::Semaphore,
    /// Each caller's uploads in progress on this node (`CHAT_UPLOADS_PER_CALLER`).
    pub per_caller: CallerUploads,
    /// Longest wait for the next piece of an upload's body (`CHAT_UPLOAD_IDLE_TIMEOUT_MS`).
    pub idle_timeout: Duration,
    /// The whole body must have arrived within this (`CHAT_UPLOAD_TIMEOUT_MS`).
    pub body_timeout: Duration,
}

impl Attachments {
    pub fn new(store: FileStore, links: FileLinks, config: &Config) -> Self {
        Attachments {
            store,
            links,
            max_upload_bytes: config.max_upload_bytes,
            max_image_pixels: config.max_image_pixels,
            in_flight: tokio::sync::Semaphore::new(UPLOADS_IN_FLIGHT),
            per_caller: CallerUploads::new(config.uploads_per_caller),
            idle_timeout: config.upload_idle_timeout,
            body_timeout: config.upload_timeout,
        }
    }

    /// The signed public URL of a stored path, as of now. A link imported from the legacy
    /// system (an absolute `http(s)://` URL, never the path of an upload here) is shown as it is.
    pub fn url(&self, path: &str) -> String {
        if is_external_link(path) {
            return path.to_string();
        }
        self.links
            .url(path, crate::clock::now_micros().div_euclid(1_000_000))
    }
}

/// Uploads in progress per caller on this node, so that one caller's slow or stalled uploads
/// cannot take every upload this node handles at once.
pub struct CallerUploads {
    limit: usize,
    counts: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One upload counted by [`CallerUploads::begin`]; it stops counting when dropped.
pub struct UploadInProgress<'a> {
    uploads: &'a CallerUploads,
    caller: String,
}

impl CallerUploads {
    pub fn new(limit: usize) -> Self {
        CallerUploads {
            limit,
            counts: Default::default(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Counts an upload of `caller` until the answer drops; `None` when the caller already has
    /// the limit in progress.
    pub fn begin(&self, caller: String) -> Option<UploadInProgress<'_>> {
        // The map is consistent after every single update, so a poisoned lock is still usable.
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(caller.clone()).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(UploadInProgress {
            uploads: self,
            caller,
        })
    }
}

impl Drop for UploadInProgress<'_> {
    fn drop(&mut self) {
        let mut counts = self
            .uploads
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.caller) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.caller);
            }
        }
    }
}

/// Why received bytes cannot be kept as the file they were sent as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileRefusal {
    /// Not a type the chat takes, or not the kind the sender said.
    #[error("{0}")]
    Unsupported(String),
    /// An image whose header declares more pixels than allowed (a decompression bomb).
    #[error("{0}")]
    TooManyPixels(String),
}

/// The refusal of bytes whose type is not on the allow-list.
pub fn not_allowed() -> FileRefusal {
    FileRefusal::Unsupported(
        "the file's type is not allowed (images: JPEG, PNG, GIF, WebP, HEIC; files: PDF, plain \
         text, ZIP)"
            .into(),
    )
}

/// Width and height from an image's header alone (nothing is decoded), refused above
/// `max_pixels`: a small file can declare a huge canvas. None for files that are not images.
pub fn image_size(
    detected: &DetectedType,
    bytes: &[u8],
    max_pixels: u64,
) -> Result<(Option<u32>, Option<u32>), FileRefusal> {
    if detected.kind != MessageType::Image {
        return Ok((None, None));
    }
    let size = imagesize::blob_size(bytes)
        .map_err(|_| FileRefusal::Unsupported("the image's header cannot be read".into()))?;
    let (width, height) = (size.width as u64, size.height as u64);
    if width.saturating_mul(height) > max_pixels {
        return Err(FileRefusal::TooManyPixels(format!(
            "the image is {width}x{height} pixels; at most {max_pixels} pixels are allowed"
        )));
    }
    let width = u32::try_from(width)
        .map_err(|_| FileRefusal::Unsupported("the image is too wide".into()))?;
    let height = u32::try_from(height)
        .map_err(|_| FileRefusal::Unsupported("the image is too tall".into()))?;
    Ok((Some(width), Some(height)))
}

/// The record of a received file, as its `FileUploaded` event keeps it.
pub fn uploaded_file(
    file_id: String,
    bytes: &[u8],
    detected: &DetectedType,
    (width, height): (Option<u32>, Option<u32>),
    client_name: Option<&str>,
    path: String,
) -> events::UploadedFile {
    use sha2::{Digest, Sha256};
    events::UploadedFile {
        file_id,
        kind: detected.kind,
        original_name: offered_name(client_name, detected.kind.as_str(), detected.extension),
        size: bytes.len() as u64,
        mime_type: detected.mime_type.to_string(),
        sha256: hex::encode(Sha256::digest(bytes)),
        path,
        width,
        height,
    }
}

/// `uploads/chat/YYYY/MM/DD/<file_id>.<ext>` for an upload received at `micros`.
pub fn storage_path(micros: i64, file_id: &str, extension: &str) -> String {
    let day = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
    format!(
        "uploads/chat/{}/{file_id}.{extension}",
        day.format("%Y/%m/%d")
    )
}

/// The name a file is offered under: the client's name without any directory part, control
/// characters or bidirectional formatting characters (an override can show `invoice\u{202E}fdp.exe`
/// as "invoiceexe.pdf"), ending in the extension of the type detected from the bytes (appended
/// when the name ends otherwise), at most [`events::MAX_FILE_NAME_CHARS`] characters; a generic
/// `<kind>.<extension>` when nothing is left. `kind` is `image` or `file`. Applied when a file
/// is uploaded, and again when it is downloaded, for names recorded before this rule.
pub fn offered_name(client_name: Option<&str>, kind: &str, extension: &str) -> String {
    let base = client_name
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !events::is_bidi_format(*c))
        .collect();
    let name = cleaned.trim();
    if name.is_empty() || name.chars().all(|c| c == '.') {
        return format!("{kind}.{extension}");
    }
    let lowered = name.to_lowercase();
    let has_extension = extension_aliases(extension)
        .iter()
        .any(|alias| lowered.ends_with(&format!(".{alias}")));
    let suffix = if has_extension {
        String::new()
    } else {
        format!(".{extension}")
    };
    // Cut the stem, never the extension that says what the file is.
    let room = events::MAX_FILE_NAME_CHARS.saturating_sub(suffix.chars().count());
    let stem: String = name.chars().take(room).collect();
    format!("{}{suffix}", stem.trim_end())
}

/// The extensions a name may end in for a detected type's extension (lower case).
fn extension_aliases(extension: &str) -> &[&str] {
    match extension {
        "jpg" => &["jpg", "jpeg"],
        "heic" => &["heic", "heif"],
        "png" => &["png"],
        "gif" => &["gif"],
        "webp" => &["webp"],
        "pdf" => &["pdf"],
        "zip" => &["zip"],
        "txt" => &["txt"],
        _ => &[],
    }
}

/// A new file id: 128 random bits as 32 lowercase hex digits.
pub fn new_file_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// An absolute web link, as `chatd import` keeps the legacy system's `file_url`s.
pub fn is_external_link(path: &str) -> bool {
    let lower = path.get(..8).unwrap_or(path).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_web_links_are_shown_as_they_are() {
        assert!(is_external_link("http://47.94.108.189/uploads/chat/a.jpg"));
        assert!(is_external_link("HTTPS://files.example.com/a.jpg"));
        assert!(!is_external_link("uploads/chat/2025/07/14/abc.jpg"));
        assert!(!is_external_link("/http://x"));
        assert!(!is_external_link("ftp://x/a.jpg"));
        assert!(!is_external_link(""));
    }

    #[test]
    fn a_caller_has_at_most_the_limit_in_progress_and_others_are_not_counted() {
        let uploads = CallerUploads::new(2);
        let first = uploads.begin("user:1".into());
        let second = uploads.begin("user:1".into());
        assert!(first.is_some() && second.is_some());
        assert!(uploads.begin("user:1".into()).is_none());
        assert!(uploads.begin("user:2".into()).is_some());
        drop(first);
        assert!(uploads.begin("user:1".into()).is_some());
        drop(second);
        assert!(uploads.counts.lock().map(|c| c.is_empty()).unwrap_or(false));
    }

    #[test]
    fn links_verify_until_they_expire_and_only_for_their_path() {
        let links = FileLinks::new("http://chat.example/", "secret");
        let now = 1_800_000_000;
        let url = links.url("uploads/chat/2026/11/25/ab.png", now);
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let mut expires = 0;
        let mut signature = "";
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("expires", v)) => expires = v.parse().unwrap_or_default(),
                Some(("signature", v)) => signature = v,
                _ => {}
            }
        }
        assert!(url.starts_with("http://chat.example/uploads/chat/2026/11/25/ab.png?"));
        assert!(expires >= now + 24 * 3600);
        assert!(links.verify("uploads/chat/2026/11/25/ab.png", expires, signature, now));
        assert!(!links.verify("uploads/chat/2026/11/25/ac.png", expires, signature, now));
        assert!(!links.verify(
            "uploads/chat/2026/11/25/ab.png",
            expires + 1,
            signature,
            now
        ));
        assert!(!links.verify(
            "uploads/chat/2026/11/25/ab.png",
            expires,
            signature,
            expires + 1
        ));
        let other = FileLinks::new("http://chat.example", "another secret");
        assert!(!other.verify("uploads/chat/2026/11/25/ab.png", expires, signature, now));
    }

    #[test]
    fn a_files_link_is_the_same_all_day_and_valid_a_day_after() {
        let links = FileLinks::new("http://chat.example", "secret");
        let path = "uploads/chat/2026/12/04/ab.png";
        let midnight = 1_796_342_400; // 2026-12-04T00:00:00Z
        let morning = links.url(path, midnight + 60);
        let night = links.url(path, midnight + 24 * 3600 - 1);
        assert_eq!(morning, night);
        assert_ne!(morning, links.url(path, midnight + 24 * 3600));
        let expires: i64 = morning
            .split("expires=")
            .nth(1)
            .and_then(|rest| rest.split('&').next())
            .and_then(|text| text.parse().ok())
            .unwrap_or_default();
        assert!(expires >= midnight + 2 * 24 * 3600, "{morning}");
    }

    #[test]
    fn an_offered_name_has_no_bidi_controls_and_ends_in_the_detected_extension() {
        assert_eq!(
            offered_name(Some("invoice\u{202E}fdp.exe"), "file", "pdf"),
            "invoicefdp.exe.pdf"
        );
        assert_eq!(
            offered_name(Some("\u{2067}a\u{200F}b\u{2069}.PDF"), "file", "pdf"),
            "ab.PDF"
        );
        assert_eq!(
            offered_name(Some("photo.JPEG"), "image", "jpg"),
            "photo.JPEG"
        );
        assert_eq!(offered_name(Some("run.bat"), "file", "txt"), "run.bat.txt");
        assert_eq!(
            offered_name(Some("../../etc/passwd"), "image", "png"),
            "passwd.png"
        );
        assert_eq!(
            offered_name(Some("C:\\Users\\me\\cat.png"), "image", "png"),
            "cat.png"
        );
        assert_eq!(offered_name(Some(".."), "image", "png"), "image.png");
        assert_eq!(offered_name(Some("\u{202E}"), "file", "zip"), "file.zip");
        assert_eq!(offered_name(None, "image", "png"), "image.png");
        assert_eq!(offered_name(Some("a\r\nb.png"), "image", "png"), "ab.png");
        let long = offered_name(Some(&"x".repeat(400)), "file", "pdf");
        assert_eq!(long.chars().count(), events::MAX_FILE_NAME_CHARS);
        assert!(long.ends_with("x.pdf"));
    }

    #[test]
    fn types_come_from_the_bytes() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(detect(png).map(|t| t.mime_type), Some("image/png"));
        assert_eq!(detect(b"%PDF-1.7\n").map(|t| t.extension), Some("pdf"));
        assert_eq!(
            detect("hello, 你好\n".as_bytes()).map(|t| t.mime_type),
            Some("text/plain")
        );
        assert_eq!(
            detect(b"MZ\x90\0\x03\0\0\0"),
            None,
            "executables are refused"
        );
        assert_eq!(detect(b"\0\x01\x02binary"), None);
        let jpeg = detect(b"\xff\xd8\xff\xe0\0\x10JFIF\0").expect("jpeg");
        assert!(declared_matches("image/jpeg", &jpeg));
        assert!(declared_matches("application/octet-stream", &jpeg));
        assert!(!declared_matches("image/png", &jpeg));
    }
}
