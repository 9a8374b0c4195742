//! A Socket.IO text frame as a client sends it: the packet parser (the vendored, patched common
//! parser), then, for an event, chatd's decoding of that event's payload. Neither may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socketioxide_core::packet::PacketData;
use socketioxide_core::parser::{Parse, ParseConfig, ParserState};
use socketioxide_parser_common::CommonParser;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = ParseConfig::default();
    let state = ParserState::default();
    let Ok(packet) = CommonParser.decode_str(&config, &state, text.to_string().into()) else {
        return;
    };
    if let PacketData::Event(socketioxide_core::Value::Str(json, _), _) = packet.inner {
        if let Ok(serde_json::Value::Array(mut parts)) =
            serde_json::from_str::<serde_json::Value>(json.as_str())
        {
            if parts.is_empty() {
                return;
            }
            let event = parts.remove(0);
            let payload = parts.into_iter().next().unwrap_or_default();
            if let Some(event) = event.as_str() {
                let _ = chatd::realtime::decode_client_payload(event, payload);
            }
        }
    }
});
