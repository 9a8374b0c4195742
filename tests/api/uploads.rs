//! Attachments through real HTTP on both back ends: POST /api/chat/upload (multipart, signed over
//! the raw multipart bytes) with small real files made here, every refusal, the download route's
//! access rules and headers, and image and file messages that carry an upload.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use events::Role;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

const BOUNDARY: &str = "chatd-test-boundary-7MA4YWxkTrZu0gW";

/// One part of a multipart form.
struct Part<'a> {
    name: &'a str,
    file_name: Option<&'a str>,
    content_type: Option<&'a str>,
    bytes: Vec<u8>,
}

fn field<'a>(name: &'a str, value: &str) -> Part<'a> {
    Part {
        name,
        file_name: None,
        content_type: None,
        bytes: value.as_bytes().to_vec(),
    }
}

fn file<'a>(file_name: &'a str, content_type: Option<&'a str>, bytes: Vec<u8>) -> Part<'a> {
    Part {
        name: "file",
        file_name: Some(file_name),
        content_type,
        bytes,
    }
}

fn multipart(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", part.name);
        if let Some(file_name) = part.file_name {
            disposition.push_str(&format!("; filename=\"{file_name}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(content_type) = part.content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&part.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A signed multipart POST to /api/chat/upload.
fn upload_request(app: &TestApp, token: &str, body: &[u8]) -> reqwest::RequestBuilder {
    let timestamp = chrono::Utc::now().timestamp_millis();
    let signature = chatd::auth::sign(APP_SECRET, timestamp, "POST", "/api/chat/upload", body);
    app.client
        .post(format!("{}/api/chat/upload", app.address))
        .header("X-Timestamp", timestamp.to_string())
        .header("X-Signature", signature)
        .bearer_auth(token)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
}

async fn upload(app: &TestApp, token: &str, parts: &[Part<'_>]) -> (u16, Value) {
    let body = multipart(parts);
    let response = upload_request(app, token, &body)
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn upload_ok(
    app: &TestApp,
    token: &str,
    conversation: u64,
    message_type: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Value {
    let (status, body) = upload(
        app,
        token,
        &[
            field("conversation_id", &conversation.to_string()),
            field("message_type", message_type),
            file(name, None, bytes),
        ],
    )
    .await;
    assert_eq!(status, 201, "upload {name}: {body}");
    body["data"].clone()
}

// ---------------------------------------------------------------------------------------------
// Small real files

pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut bytes, b"IHDR", &ihdr);
    // One black pixel row per line would be the image data; a header is all a viewer needs to
    // know the size, and all this test needs.
    chunk(
        &mut bytes,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0, 0, 0, 2, 0, 1],
    );
    chunk(&mut bytes, b"IEND", &[]);
    bytes
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(kind, data).to_be_bytes());
}

fn crc32(kind: &[u8], data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for byte in kind.iter().chain(data) {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = vec![0xff, 0xd8];
    bytes.extend_from_slice(&[0xff, 0xe0, 0, 16]);
    bytes.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    bytes.extend_from_slice(&[0xff, 0xc0, 0, 17, 8]);
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    bytes.extend_from_slice(&[0xff, 0xd9]);
    bytes
}

fn gif(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = b"GIF89a".to_vec();
    bytes.extend_from_slice(&width.to_le_bytes());
    bytes.extend_from_slice(&height.to_le_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0x3b]);
    bytes
}

fn webp(width: u32, height: u32) -> Vec<u8> {
    let mut vp8x = vec![0u8; 4];
    vp8x.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    body.extend_from_slice(b"VP8X");
    body.extend_from_slice(&(vp8x.len() as u32).to_le_bytes());
    body.extend_from_slice(&vp8x);
    let mut bytes = b"RIFF".to_vec();
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// An HEIC file as a phone makes one, down to the property that carries its size: the `ftyp`
/// box, then `meta` > `iprp` > `ipco` > `ispe` (the coded image itself is left out).
fn heic(width: u32, height: u32) -> Vec<u8> {
    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }
    let mut ispe = vec![0u8; 4];
    ispe.extend_from_slice(&width.to_be_bytes());
    ispe.extend_from_slice(&height.to_be_bytes());
    let ipco = boxed(b"ipco", &boxed(b"ispe", &ispe));
    let iprp = boxed(b"iprp", &ipco);
    let mut meta_body = vec![0u8; 4];
    meta_body.extend_from_slice(&iprp);
    let mut bytes = boxed(b"ftyp", b"heic\0\0\0\0mif1heic");
    bytes.extend_from_slice(&boxed(b"meta", &meta_body));
    bytes
}

pub(crate) fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}

fn zip() -> Vec<u8> {
    // An empty archive's end-of-central-directory record behind one stored entry's header.
    let mut bytes = b"PK\x03\x04\x0a\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0a".to_vec();
    bytes.extend_from_slice(b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    bytes
}

/// A user with an open conversation: (user id, token, conversation id).
async fn user_with_conversation(app: &TestApp) -> (u64, String, u64) {
    let (id, token) = app.session(Role::User, None).await;
    let (status, opened) = app
        .call(
            Method::POST,
            "/api/chat/conversations",
            Some(&token),
            Some(&json!({"initial_message": "I have a screenshot"})),
        )
        .await;
    assert_eq!(status, 201, "{opened}");
    let conversation = opened["data"]["conversation_id"].as_u64().expect("id");
    (id, token, conversation)
}

fn error_code(body: &Value) -> &str {
    body["error_code"].as_str().unwrap_or_default()
}

/// The path part of a file_url (`/uploads/chat/...`), without the host and the query.
fn url_path(file_url: &str) -> String {
    let after_host = file_url
        .split_once("//")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, path)| path)
        .unwrap_or_default();
    format!("/{}", after_host.split('?').next().unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_allowed_type_is_stored_with_what_its_bytes_say() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, token, conversation) = user_with_conversation(&app).await;
        // (message_type, name, bytes, detected type, image size)
        type Case = (
            &'static str,
            &'static str,
            Vec<u8>,
            &'static str,
            Option<(u64, u64)>,
        );
        let cases: Vec<Case> = vec![
            (
                "image",
                "photo.png",
                png(640, 480),
                "image/png",
                Some((640, 480)),
            ),
            (
                "image",
                "photo.jpg",
                jpeg(320, 200),
                "image/jpeg",
                Some((320, 200)),
            ),
            ("image", "anim.gif", gif(16, 9), "image/gif", Some((16, 9))),
            (
                "image",
                "pic.webp",
                webp(300, 150),
                "image/webp",
                Some((300, 150)),
            ),
            (
                "image",
                "IMG_0001.HEIC",
                heic(4032, 3024),
                "image/heic",
                Some((4032, 3024)),
            ),
            ("file", "invoice.pdf", pdf(), "application/pdf", None),
            (
                "file",
                "notes.txt",
                "Hello 你好\nline two\n".into(),
                "text/plain",
                None,
            ),
            ("file", "archive.zip", zip(), "application/zip", None),
        ];
        for (message_type, name, bytes, mime_type, size) in cases {
            let size_in_bytes = bytes.len() as u64;
            let data = upload_ok(&app, &token, conversation, message_type, name, bytes).await;
            assert_eq!(data["mime_type"], mime_type, "{name}: {data}");
            assert_eq!(data["message_type"], message_type, "{name}: {data}");
            assert_eq!(data["filename"], name);
            assert_eq!(data["file_size"], size_in_bytes);
            let file_id = data["file_id"].as_str().expect("file_id");
            assert_eq!(file_id.len(), 32, "128 random bits as hex");
            let file_url = data["file_url"].as_str().expect("file_url");
            assert!(file_url.starts_with(&format!("{}/uploads/chat/", app.address)));
            let path = url_path(file_url);
            let extension = path.rsplit('.').next().unwrap_or_default();
            assert!(
                path.ends_with(&format!("/{file_id}.{extension}")),
                "{path} must end with the file id and the detected type's extension"
            );
            match size {
                Some((width, height)) => {
                    assert_eq!(
                        (data["width"].as_u64(), data["height"].as_u64()),
                        (Some(width), Some(height)),
                        "{name}"
                    );
                }
                None => assert!(data["width"].is_null() && data["height"].is_null()),
            }
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_refusal_has_its_contract_code_and_stores_nothing() {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(
            &db,
            &[
                ("CHAT_MAX_UPLOAD_BYTES", "65536"),
                ("CHAT_MAX_IMAGE_PIXELS", "1000000"),
                ("CHAT_LIMIT_UPLOADS_PER_MIN", "1000"),
            ],
        )
        .await;
        let (_, token, conversation) = user_with_conversation(&app).await;
        let (_, other_token, _) = user_with_conversation(&app).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let id = conversation.to_string();
        let executable = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0".to_vec();

        let cases: Vec<(&str, String, Vec<Part>, u16, &str)> = vec![
            (
                "too big",
                token.clone(),
                vec![
                    field("conversation_id", &id),
                    field("message_type", "file"),
                    file("big.txt", None, vec![b'a'; 65537]),
                ],
                413,
                "PAYLOAD_TOO_LARGE",
            ),
            (
                "a decompression bomb",
                token.clone(),
                vec![
                    field("conversation_id", &id),
                    field("message_type", "image"),
                    file("bomb.png", None, png(50_000, 50_000)),
                ],
                413,
                "PAYLOAD_TOO_LARGE",
            ),
            (
                "an executable",
                token.clone(),
                vec![
                    field("conversation_id", &id),
                    field("message_type", "file"),
                    file("setup.pdf", Some("application/pdf"), executable.clone()),
                ],
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            (
                "binary junk",
                token.clone(),
                vec![
                    field("conversation_id", &id),
                    field("message_type", "file"),
                    file("data.bin", None, vec![0, 1, 2, 3, 0xff, 0xfe]),
                ],
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            (
                "a PDF sent as an image",
                token.clone(),
                vec![
                    field("conversation_id", &id),
                    field("message_type", "image"),
                    file("photo.png", None, pdf()),
                ],
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            (
                "JPEG bytes declared as PNG",
                token.clone(),
                vec![
                    field("conversation_id", &id),
                    field("message_type", "image"),
                    file("photo.png", Some("image/png"), jpeg(10, 10)),
                ],
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            (
                "another user's conversation",
                other_token.clone(),
                vec![
                    field("conversation_id", &id),
                    field("message_type", "image"),
                    file("photo.png", None, png(10, 10)),
                ],
                403,
                "FORBIDDEN",
            ),
            (
                "an auditor",
                auditor.clone(),
                vec![
                    field("conversation_id", &id),
                    field("message_type", "image"),
                    file("photo.png", None, png(10, 10)),
                ],
                403,
                "FORBIDDEN",
            ),
            (
                "no such conversation",
                token.clone(),
                vec![
                    field("conversation_id", "9007199254740000"),
                    field("message_type", "image"),
                    file("photo.png", None, png(10, 10)),
                ],
                404,
                "NOT_FOUND",
            ),
            (
                "no conversation_id",
                token.clone(),
                vec![
                    field("message_type", "image"),
                    file("photo.png", None, png(10, 10)),
                ],
                400,
                "VALIDATION_ERROR",
            ),
            (
                "a text message_type",
                token.clone(),
                vec![
                    field("conversation_id", &id),
                    field("message_type", "text"),
                    file("photo.png", None, png(10, 10)),
                ],
                400,
                "VALIDATION_ERROR",
            ),
            (
                "no file",
                token.clone(),
                vec![
                    field("conversation_id", &id),
                    field("message_type", "image"),
                ],
                400,
                "VALIDATION_ERROR",
            ),
            (
                "an empty file",
                token.clone(),
                vec![
                    field("conversation_id", &id),
                    field("message_type", "file"),
                    file("empty.txt", None, Vec::new()),
                ],
                400,
                "VALIDATION_ERROR",
            ),
        ];
        for (what, token, parts, status, code) in cases {
            let (got, body) = upload(&app, &token, &parts).await;
            assert_eq!((got, error_code(&body)), (status, code), "{what}: {body}");
            assert_eq!(body["status"], "error", "{what}: {body}");
        }

        // Not multipart at all, and a body whose bytes differ from what was signed.
        let response = app
            .signed(
                Method::POST,
                "/api/chat/upload",
                Some(&token),
                Some(&json!({"file": "x"})),
            )
            .send()
            .await
            .expect("json upload");
        assert_eq!(response.status().as_u16(), 400);
        let body = multipart(&[
            field("conversation_id", &id),
            file("a.txt", None, b"hello".to_vec()),
        ]);
        let mut tampered = body.clone();
        let at = tampered.len() - BOUNDARY.len() - 12;
        tampered[at] ^= 1;
        let response = upload_request(&app, &token, &body)
            .body(tampered)
            .send()
            .await
            .expect("tampered");
        assert_eq!(response.status().as_u16(), 401);
        let body: Value = response.json().await.unwrap_or_default();
        assert_eq!(error_code(&body), "INVALID_SIGNATURE");
        let response = app
            .client
            .post(format!("{}/api/chat/upload", app.address))
            .bearer_auth(&token)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(multipart(&[
                field("conversation_id", &id),
                file("a.txt", None, b"hello".to_vec()),
            ]))
            .send()
            .await
            .expect("unsigned");
        assert_eq!(response.status().as_u16(), 401, "an unsigned upload");

        // Nothing of the above is in the log or the files table.
        let (status, listed) = app
            .call(
                Method::GET,
                &format!("/api/chat/messages?conversation_id={conversation}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{listed}");
        let events = app
            .state
            .store
            .read_stream("conversation", &conversation.to_string(), 0)
            .await
            .expect("stream");
        assert!(
            events.iter().all(|e| e.event_type != "FileUploaded"),
            "a refused upload wrote an event"
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_huge_upload_is_cut_off_at_the_limit_not_read_whole() {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(&db, &[("CHAT_MAX_UPLOAD_BYTES", "1048576")]).await;
        let (_, token, conversation) = user_with_conversation(&app).await;
        // A 2 GB file, streamed without a Content-Length; the test counts what the server pulled.
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let head = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"conversation_id\"\r\n\r\n{conversation}\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"huge.txt\"\r\n\r\n"
        );
        let chunk = bytes::Bytes::from(vec![b'a'; 64 * 1024]);
        let total_chunks = 2u64 * 1024 * 1024 * 1024 / (64 * 1024);
        let stream = futures::stream::iter(
            std::iter::once(bytes::Bytes::from(head))
                .chain((0..total_chunks).map(move |_| chunk.clone())),
        )
        .map(move |piece| {
            counter.fetch_add(piece.len() as u64, Ordering::Relaxed);
            Ok::<_, std::io::Error>(piece)
        });
        let response = upload_request(&app, &token, b"")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        let pulled = sent.load(Ordering::Relaxed);
        match response {
            Ok(response) => {
                assert_eq!(response.status().as_u16(), 413);
                let body: Value = response.json().await.unwrap_or_default();
                assert_eq!(error_code(&body), "PAYLOAD_TOO_LARGE");
            }
            // The server may close the connection as soon as it has answered.
            Err(error) => assert!(pulled < 64 * 1024 * 1024, "{error}"),
        }
        assert!(
            pulled < 64 * 1024 * 1024,
            "the server read {pulled} bytes of a 2 GB upload limited to 1 MiB"
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_file_name_never_becomes_a_path() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, token, conversation) = user_with_conversation(&app).await;
        for name in [
            "../../etc/passwd",
            "..\\..\\windows\\win.ini",
            "/etc/shadow",
            "..",
        ] {
            let data = upload_ok(
                &app,
                &token,
                conversation,
                "file",
                name,
                b"plain words\n".to_vec(),
            )
            .await;
            let path = url_path(data["file_url"].as_str().unwrap_or_default());
            let file_id = data["file_id"].as_str().unwrap_or_default();
            assert!(
                path.starts_with("/uploads/chat/") && path.ends_with(&format!("/{file_id}.txt")),
                "{name:?} was stored at {path}"
            );
            let shown = data["filename"].as_str().unwrap_or_default();
            assert!(
                !shown.contains('/') && !shown.contains('\\') && shown != "..",
                "{name:?} is shown as {shown:?}"
            );
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_name_with_a_direction_override_is_offered_clean_with_the_detected_extension() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, token, conversation) = user_with_conversation(&app).await;
        // Shown as "invoiceexe.pdf" where the override is honoured; the bytes are a PDF.
        let data = upload_ok(
            &app,
            &token,
            conversation,
            "file",
            "invoice\u{202E}fdp.exe",
            pdf(),
        )
        .await;
        let shown = data["filename"].as_str().unwrap_or_default();
        assert_eq!(shown, "invoicefdp.exe.pdf", "{}", db.name());

        let path = url_path(data["file_url"].as_str().unwrap_or_default());
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .bearer_auth(&token)
            .send()
            .await
            .expect("download");
        assert_eq!(response.status().as_u16(), 200);
        let disposition = response.headers()["content-disposition"]
            .to_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            disposition,
            "attachment; filename=\"invoicefdp.exe.pdf\"; filename*=UTF-8''invoicefdp.exe.pdf"
        );
        assert!(!disposition.contains("%E2%80%AE"), "{disposition}");

        // A text file named like a script is offered as text.
        let data = upload_ok(
            &app,
            &token,
            conversation,
            "file",
            "\u{2067}run.bat\u{2069}",
            b"echo hi\n".to_vec(),
        )
        .await;
        assert_eq!(data["filename"], "run.bat.txt");
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_serve_readers_and_signed_links_with_safe_headers() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, token, conversation) = user_with_conversation(&app).await;
        let (_, other_token, _) = user_with_conversation(&app).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let image = png(64, 32);
        let photo = upload_ok(
            &app,
            &token,
            conversation,
            "image",
            "photo.png",
            image.clone(),
        )
        .await;
        let report = upload_ok(&app, &token, conversation, "file", "报告 final.pdf", pdf()).await;
        let photo_url = photo["file_url"].as_str().expect("url").to_string();
        let photo_path = url_path(&photo_url);
        let report_path = url_path(report["file_url"].as_str().expect("url"));

        // The signed link works without any header (an iOS image view).
        let response = app.client.get(&photo_url).send().await.expect("signed get");
        assert_eq!(response.status().as_u16(), 200);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "image/png");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(
            headers["content-disposition"]
                .to_str()
                .unwrap_or_default()
                .starts_with("inline;")
        );
        let csp = headers["content-security-policy"]
            .to_str()
            .unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("sandbox"),
            "{csp}"
        );
        assert_eq!(response.bytes().await.expect("bytes").to_vec(), image);

        // Sessions that may read the conversation: the owner and an admin; files are attachments.
        for reader in [&token, &admin] {
            let response = app
                .client
                .get(format!("{}{report_path}", app.address))
                .bearer_auth(reader)
                .send()
                .await
                .expect("session get");
            assert_eq!(response.status().as_u16(), 200);
            assert_eq!(response.headers()["content-type"], "application/pdf");
            assert_eq!(
                response.headers()["content-disposition"],
                "attachment; filename=\"__ final.pdf\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%20final.pdf"
            );
            assert_eq!(response.bytes().await.expect("bytes").to_vec(), pdf());
        }

        // Everyone else: refused, with the contract's codes.
        let get = |path: String, bearer: Option<String>| {
            let mut request = app.client.get(format!("{}{path}", app.address));
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        let refusals = vec![
            (
                "another user",
                photo_path.clone(),
                Some(other_token.clone()),
                403,
            ),
            ("no session and no link", photo_path.clone(), None, 401),
            (
                "a forged signature",
                format!(
                    "{photo_path}?expires=9999999999&signature={}",
                    "0".repeat(64)
                ),
                None,
                403,
            ),
            (
                "a link to another file",
                format!(
                    "{report_path}?{}",
                    photo_url
                        .split_once('?')
                        .map(|(_, q)| q)
                        .unwrap_or_default()
                ),
                None,
                403,
            ),
            (
                "no such file",
                photo_path.replace(
                    photo["file_id"].as_str().unwrap_or_default(),
                    &"ab".repeat(16),
                ),
                Some(token.clone()),
                404,
            ),
            (
                "not a file path",
                "/uploads/chat/2026/11/25/..%2F..%2Fetc%2Fpasswd".to_string(),
                Some(token.clone()),
                404,
            ),
        ];
        for (what, path, bearer, status) in refusals {
            let response = get(path, bearer).await.expect("get");
            assert_eq!(response.status().as_u16(), status, "{what}");
            let body: Value = response.json().await.unwrap_or_default();
            assert_eq!(body["status"], "error", "{what}: {body}");
        }
        // An expired link, signed with the right key.
        let links = chatd::files::FileLinks::new(&app.address, APP_SECRET);
        let stale = links.url(
            photo_path.trim_start_matches('/'),
            chrono::Utc::now().timestamp() - 3 * 24 * 3600,
        );
        let response = app.client.get(&stale).send().await.expect("stale get");
        assert_eq!(response.status().as_u16(), 403, "an expired link");

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn image_and_file_messages_carry_the_senders_own_upload() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, token, conversation) = user_with_conversation(&app).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let photo = upload_ok(&app, &token, conversation, "image", "photo.png", png(8, 8)).await;
        let file_id = photo["file_id"].as_str().expect("file_id").to_string();

        let (status, sent) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&token),
                Some(&json!({"conversation_id": conversation, "message_type": "image", "content": "", "file_id": file_id})),
            )
            .await;
        assert_eq!(status, 201, "{sent}");
        let message = &sent["data"];
        assert_eq!(message["file_id"], file_id.as_str());
        let file_url = message["file_url"].as_str().expect("file_url").to_string();
        assert_eq!(
            url_path(&file_url),
            url_path(photo["file_url"].as_str().unwrap_or_default())
        );
        let response = app.client.get(&file_url).send().await.expect("get");
        assert_eq!(
            response.status().as_u16(),
            200,
            "the message's file_url loads without headers"
        );

        let (_, listed) = app
            .call(
                Method::GET,
                &format!("/api/chat/messages?conversation_id={conversation}"),
                Some(&token),
                None,
            )
            .await;
        let last = listed["data"]["messages"]
            .as_array()
            .and_then(|m| m.last())
            .cloned()
            .unwrap_or_default();
        assert_eq!(last["file_id"], file_id.as_str());
        assert_eq!(
            url_path(last["file_url"].as_str().unwrap_or_default()),
            url_path(&file_url)
        );

        // Someone else's upload, an upload of the other kind, and an id never uploaded.
        let refusals = vec![
            (
                "the user's upload sent by an admin",
                &admin,
                json!({"conversation_id": conversation, "message_type": "image", "content": "", "file_id": file_id}),
                403,
            ),
            (
                "an image sent as a file",
                &token,
                json!({"conversation_id": conversation, "message_type": "file", "content": "", "file_id": file_id}),
                400,
            ),
            (
                "an id never uploaded",
                &token,
                json!({"conversation_id": conversation, "message_type": "image", "content": "", "file_id": "ab".repeat(16)}),
                400,
            ),
        ];
        for (what, caller, body, status) in refusals {
            let (got, answer) = app
                .call(
                    Method::POST,
                    "/api/chat/messages",
                    Some(caller),
                    Some(&body),
                )
                .await;
            assert_eq!(got, status, "{what}: {answer}");
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_uploads_a_minute_then_429_with_retry_after() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, token, conversation) = user_with_conversation(&app).await;
        for n in 0..10 {
            upload_ok(
                &app,
                &token,
                conversation,
                "file",
                &format!("n{n}.txt"),
                b"words\n".to_vec(),
            )
            .await;
        }
        let body = multipart(&[
            field("conversation_id", &conversation.to_string()),
            file("eleven.txt", None, b"words\n".to_vec()),
        ]);
        let response = upload_request(&app, &token, &body)
            .body(body)
            .send()
            .await
            .expect("11th");
        assert_eq!(response.status().as_u16(), 429);
        assert!(response.headers().contains_key("retry-after"));
        app.stop().await;
        db.cleanup().await;
    }
}

/// An S3-compatible server for the test (moto's, from `tests/requirements.txt`), on a free port.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
}

impl S3Server {
    async fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the S3 test needs moto's server (`pip install -r tests/requirements.txt`): {e}"
                )
            });
        // Owned at once, so that every way out of here stops it.
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client.get(&server.endpoint).send().await.is_ok() {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "moto's S3 server did not start on {} (is `moto[server]` installed?)",
            server.endpoint
        );
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_an_s3_bucket_every_node_serves_every_upload() {
    // Two nodes share MariaDB and the bucket, but not a disk.
    let db = TestDb::mysql().await;
    let s3 = S3Server::start().await;
    let bucket = format!("chatd-test-{}", fresh_id());
    let created = reqwest::Client::new()
        .put(format!("{}/{bucket}", s3.endpoint))
        .send()
        .await
        .expect("create the bucket");
    assert!(created.status().is_success(), "{}", created.status());
    let settings = [
        ("CHAT_S3_BUCKET", bucket.as_str()),
        ("CHAT_S3_ENDPOINT", s3.endpoint.as_str()),
        ("CHAT_S3_REGION", "us-east-1"),
        ("CHAT_S3_ACCESS_KEY_ID", "test"),
        ("CHAT_S3_SECRET_ACCESS_KEY", "test"),
    ];
    let first = TestApp::spawn_with(&db, &settings).await;
    let second = TestApp::spawn_with(&db, &settings).await;
    let (_, token, conversation) = user_with_conversation(&first).await;
    let image = png(120, 90);
    let data = upload_ok(
        &first,
        &token,
        conversation,
        "image",
        "shared.png",
        image.clone(),
    )
    .await;
    let path = url_path(data["file_url"].as_str().unwrap_or_default());

    let response = second
        .client
        .get(format!("{}{path}", second.address))
        .bearer_auth(&token)
        .send()
        .await
        .expect("download from the second node");
    assert_eq!(response.status().as_u16(), 200, "the second node serves it");
    assert_eq!(response.bytes().await.expect("bytes").to_vec(), image);

    // The object is in the bucket under the contract's path.
    let listed = reqwest::Client::new()
        .get(format!("{}/{bucket}?list-type=2", s3.endpoint))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .unwrap_or_default();
    assert!(listed.contains(path.trim_start_matches('/')), "{listed}");

    second.stop().await;
    first.stop().await;
    db.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Slow and stalled uploads

/// Long enough for any answer these tests wait for; an upload held up behind stalled ones
/// waits forever, so reaching this is the failure.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// A file bigger than what an upload reads before it needs one of the node's upload slots.
fn slot_sized_text() -> Vec<u8> {
    b"a line of a long log file\n".repeat(8 * 1024)
}

/// A signed upload that must complete (within `PATIENCE`): 201 and its file's size.
async fn upload_completes(app: &TestApp, token: &str, conversation: u64, bytes: Vec<u8>) -> u64 {
    let body = multipart(&[
        field("conversation_id", &conversation.to_string()),
        field("message_type", "file"),
        file("log.txt", None, bytes),
    ]);
    let response = upload_request(app, token, &body)
        .timeout(PATIENCE)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|error| {
            if error.is_timeout() {
                panic!("the upload did not complete within {PATIENCE:?}");
            }
            panic!("the upload failed: {error}")
        });
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or_default();
    assert_eq!(status, 201, "{answer}");
    answer["data"]["file_size"].as_u64().unwrap_or_default()
}

/// The head of an upload that will send `content_length` bytes of body, signed over `body`
/// when it is given, unsigned otherwise.
fn raw_upload_headers(
    token: &str,
    content_length: usize,
    body: Option<&[u8]>,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("Authorization", format!("Bearer {token}")),
        (
            "Content-Type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        ),
        ("Content-Length", content_length.to_string()),
    ];
    if let Some(body) = body {
        let timestamp = chrono::Utc::now().timestamp_millis();
        let signature = chatd::auth::sign(APP_SECRET, timestamp, "POST", "/api/chat/upload", body);
        headers.push(("X-Timestamp", timestamp.to_string()));
        headers.push(("X-Signature", signature));
    }
    headers
}

/// A signed upload of a 1 MB file, made ready to send: its headers and body.
struct SignedUpload {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl SignedUpload {
    fn new(token: &str, conversation: u64) -> SignedUpload {
        let body = multipart(&[
            field("conversation_id", &conversation.to_string()),
            field("message_type", "file"),
            file("stalled.txt", None, vec![b'a'; 1_000_000]),
        ]);
        SignedUpload {
            headers: raw_upload_headers(token, body.len(), Some(&body)),
            body,
        }
    }

    /// Sends the head and the first `sent` bytes of the body, then nothing more.
    async fn stall_after(&self, app: &TestApp, sent: usize) -> raw_http::RawRequest {
        raw_http::RawRequest::post(
            &app.address,
            "/api/chat/upload",
            &self.headers,
            &self.body[..sent],
        )
        .await
    }
}

fn assert_envelope(answer: &raw_http::RawAnswer, status: u16, code: &str, what: &str) {
    assert_eq!(
        (answer.status, error_code(&answer.body)),
        (status, code),
        "{what}: {answer:?}"
    );
    assert_eq!(answer.body["status"], "error", "{what}: {answer:?}");
    assert!(answer.body["message"].is_string(), "{what}: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_stalled_unsigned_uploads_are_refused_and_a_signed_one_completes() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        // Two callers, eight uploads each: a token, a 1 MB Content-Length, 200 bytes of body,
        // no signature, then nothing.
        let mut stalled = Vec::new();
        for _ in 0..2 {
            let (_, token, _) = user_with_conversation(&app).await;
            for _ in 0..8 {
                stalled.push(
                    raw_http::RawRequest::post(
                        &app.address,
                        "/api/chat/upload",
                        &raw_upload_headers(&token, 1_000_000, None),
                        &[b'a'; 200],
                    )
                    .await,
                );
            }
        }

        // Another caller's signed upload completes while they are open.
        let (_, token, conversation) = user_with_conversation(&app).await;
        let size = upload_completes(&app, &token, conversation, slot_sized_text()).await;
        assert_eq!(size, slot_sized_text().len() as u64);

        for (n, request) in stalled.iter_mut().enumerate() {
            let answer = request.answer(PATIENCE).await.unwrap_or_else(|| {
                panic!("{}: stalled unsigned upload {n} was not refused", db.name())
            });
            assert_envelope(&answer, 401, "INVALID_SIGNATURE", "an unsigned upload");
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_signed_uploads_are_cut_off_and_never_hold_up_another_callers() {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(
            &db,
            &[
                ("CHAT_UPLOADS_PER_CALLER", "2"),
                ("CHAT_UPLOAD_IDLE_TIMEOUT_MS", "2000"),
                ("CHAT_UPLOAD_TIMEOUT_MS", "5000"),
                ("CHAT_LIMIT_UPLOADS_PER_MIN", "1000"),
            ],
        )
        .await;
        let slots = &app.state.attachments.in_flight;
        let every_slot = slots.available_permits();

        // Eight callers, two signed uploads each, that send their first 100 KiB and stop: every
        // upload slot of the node is held by a stalled upload.
        let mut callers = Vec::new();
        for _ in 0..every_slot / 2 {
            let (_, token, conversation) = user_with_conversation(&app).await;
            callers.push((token, conversation));
        }
        // Signed beforehand, so that they are all sent within moments.
        let uploads: Vec<SignedUpload> = callers
            .iter()
            .flat_map(|(token, conversation)| {
                [0, 1].map(|_| SignedUpload::new(token, *conversation))
            })
            .collect();
        let third = SignedUpload::new(&callers[0].0, callers[0].1);
        let mut stalled = Vec::new();
        for upload in &uploads {
            stalled.push(upload.stall_after(&app, 100 * 1024).await);
        }
        let held = tokio::time::timeout(PATIENCE, async {
            while slots.available_permits() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            held.is_ok(),
            "{}: the stalled uploads hold every slot",
            db.name()
        );

        // Another caller's small upload completes while they hold every slot.
        let (_, token, conversation) = user_with_conversation(&app).await;
        upload_completes(&app, &token, conversation, b"small\n".to_vec()).await;

        // A third upload of one of the stalled callers is refused at once.
        let mut third = third.stall_after(&app, 200).await;
        let answer = third
            .answer(PATIENCE)
            .await
            .unwrap_or_else(|| panic!("{}: a third upload of one caller waited", db.name()));
        assert_envelope(&answer, 429, "RATE_LIMITED", "a third upload of one caller");
        assert!(answer.header("retry-after").is_some(), "{answer:?}");

        // One that needs a slot completes too: stalled uploads give theirs up.
        upload_completes(&app, &token, conversation, slot_sized_text()).await;

        // Every stalled upload is cut off as idle, in the envelope.
        for request in &mut stalled {
            let answer = request
                .answer(PATIENCE)
                .await
                .unwrap_or_else(|| panic!("{}: a stalled upload was never cut off", db.name()));
            assert_envelope(&answer, 408, "REQUEST_TIMEOUT", "a stalled upload");
        }

        // One that keeps sending a little, never idle for long, is cut off at the deadline.
        let (_, token, conversation) = user_with_conversation(&app).await;
        let mut trickle = SignedUpload::new(&token, conversation)
            .stall_after(&app, 100 * 1024)
            .await;
        trickle.trickle(std::time::Duration::from_millis(300), &[b'a'; 16]);
        let answer = trickle
            .answer(PATIENCE)
            .await
            .unwrap_or_else(|| panic!("{}: a trickling upload was never cut off", db.name()));
        assert_envelope(&answer, 408, "REQUEST_TIMEOUT", "a trickling upload");

        // Nothing of the cut off uploads was recorded, and every slot is free again.
        callers.push((token, conversation));
        for (_, conversation) in &callers {
            let events = app
                .state
                .store
                .read_stream("conversation", &conversation.to_string(), 0)
                .await
                .expect("stream");
            assert!(
                events.iter().all(|e| e.event_type != "FileUploaded"),
                "{}: a cut off upload was recorded",
                db.name()
            );
        }
        assert_eq!(slots.available_permits(), every_slot);
        app.stop().await;
        db.cleanup().await;
    }
}
