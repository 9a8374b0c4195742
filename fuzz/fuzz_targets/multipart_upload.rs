//! An upload's multipart body, read with the upload route's rules (part names, one file,
//! the size limit): arbitrary bytes under a fixed boundary. It may be refused, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let body = bytes::Bytes::copy_from_slice(data);
    let _ = runtime.block_on(chatd::http::files::read_whole_form(body, "fuzzboundary", 4096));
});
