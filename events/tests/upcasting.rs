//! Old event shapes still load: each stored sample is upcast to the current shape.

use cqrs_es::persist::SerializedEvent;
use events::upcast::{decode_payload, upcast_payload, upcasters};
use events::{Actor, ConversationEvent, MessageType, Role};
use serde_json::{Value, json};

fn message_sent_v1_sample() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/samples/message_sent_v1.json"
    );
    let text = std::fs::read_to_string(path).expect("read sample");
    serde_json::from_str(&text).expect("parse sample")
}

fn expected_message() -> ConversationEvent {
    ConversationEvent::MessageSent {
        message_id: 7,
        sender: Actor::new(42, Role::User, "user_uuid_42"),
        message_type: MessageType::Text,
        content: "Hello, I need help".into(),
        file_id: None,
        client_msg_id: None,
        file_path: None,
        attachment: None,
    }
}

fn serialized(event_type: &str, event_version: &str, payload: Value) -> SerializedEvent {
    SerializedEvent::new(
        "100".into(),
        1,
        "conversation".into(),
        event_type.into(),
        event_version.into(),
        payload,
        json!({}),
    )
}

/// What cqrs-es does on load: every upcaster that can, in order.
fn apply_upcasters(event: SerializedEvent) -> SerializedEvent {
    upcasters().iter().fold(event, |event, upcaster| {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            upcaster.upcast(event)
        } else {
            event
        }
    })
}

#[test]
fn a_legacy_message_sent_v1_upcasts_to_the_current_message_sent() {
    // arrange
    let event = serialized("MessageSent", "1", message_sent_v1_sample());
    // act
    let upcast = apply_upcasters(event);
    let message = ConversationEvent::from_parts(&upcast.event_type, upcast.payload.clone());
    // assert
    assert_eq!(upcast.event_version, "2.0.0");
    assert_eq!(
        upcast.payload,
        json!({
            "message_id": 7,
            "sender": {"id": 42, "role": "user", "identifier": "user_uuid_42"},
            "message_type": "text",
            "content": "Hello, I need help",
            "file_id": null,
            "client_msg_id": null
        })
    );
    assert_eq!(message, Ok(expected_message()));
}

#[test]
fn upcast_payload_brings_a_v1_message_to_the_current_shape() {
    let payload = upcast_payload("MessageSent", "1", message_sent_v1_sample()).expect("upcast");

    assert_eq!(
        ConversationEvent::from_parts("MessageSent", payload),
        Ok(expected_message())
    );
}

#[test]
fn current_payloads_pass_through_unchanged() {
    let payload = expected_message().payload_json();

    for version in ["2", "2.0", "2.0.0"] {
        assert_eq!(
            upcast_payload("MessageSent", version, payload.clone()),
            Ok(payload.clone())
        );
    }
    let closed = json!({"by": {"id": 1, "role": "admin", "identifier": "alice"}});
    assert_eq!(
        upcast_payload("ConversationClosed", "1", closed.clone()),
        Ok(closed)
    );
}

#[test]
fn current_message_sent_events_are_not_touched_by_the_upcasters() {
    let event = serialized("MessageSent", "2", expected_message().payload_json());

    let upcast = apply_upcasters(event.clone());

    assert_eq!(upcast, event);
}

#[test]
fn an_upcaster_also_accepts_the_payload_wrapped_in_its_type_tag() {
    let event = serialized(
        "MessageSent",
        "1",
        json!({"MessageSent": message_sent_v1_sample()}),
    );

    let upcast = apply_upcasters(event);
    let message: ConversationEvent = serde_json::from_value(upcast.payload).expect("current");

    assert_eq!(message, expected_message());
}

#[test]
fn a_version_newer_than_this_build_knows_is_refused() {
    let result = upcast_payload("MessageSent", "3", json!({}));

    let err = result.expect_err("newer version must fail");
    assert!(err.to_string().contains("newer"), "{err}");
    assert!(upcast_payload("ConversationClosed", "2", json!({})).is_err());
}

#[test]
fn an_unknown_event_type_is_refused() {
    let err = upcast_payload("MessagePinned", "1", json!({})).expect_err("unknown");

    assert!(err.to_string().contains("unknown event type"), "{err}");
}

#[test]
fn a_version_that_is_not_a_number_or_too_old_is_refused() {
    assert!(upcast_payload("MessageSent", "v1", json!({})).is_err());
    assert!(upcast_payload("MessageSent", "", json!({})).is_err());
    assert!(upcast_payload("MessageSent", "0.9", json!({})).is_err());
}

#[test]
fn a_legacy_admin_message_with_a_string_id_upcasts() {
    let v1 = json!({
        "message_id": "12",
        "sender_role": "admin",
        "sender_id": "3",
        "sender_identifier": "admin_bob",
        "message": "On it"
    });

    let payload = upcast_payload("MessageSent", "1", v1).expect("upcast");

    assert_eq!(
        ConversationEvent::from_parts("MessageSent", payload),
        Ok(ConversationEvent::MessageSent {
            message_id: 12,
            sender: Actor::new(3, Role::Admin, "admin_bob"),
            message_type: MessageType::Text,
            content: "On it".into(),
            file_id: None,
            client_msg_id: None,
            file_path: None,
            attachment: None,
        })
    );
}

#[test]
fn a_stored_payload_decodes_from_its_text_in_every_version() {
    let current = expected_message().payload_json().to_string();
    for version in ["2", "2.0.0"] {
        assert_eq!(
            decode_payload("MessageSent", version, &current),
            Ok(expected_message())
        );
    }
    let v1 = message_sent_v1_sample().to_string();
    assert_eq!(
        decode_payload("MessageSent", "1", &v1),
        Ok(expected_message())
    );
}

#[test]
fn a_stored_payload_that_cannot_be_read_says_why() {
    let refused = |event_type: &str, version: &str, payload: &str| {
        decode_payload(event_type, version, payload)
            .expect_err("refused")
            .to_string()
    };
    assert!(refused("MessageSent", "3", "{}").contains("newer"));
    assert!(refused("MessagePinned", "1", "{}").contains("unknown event type"));
    assert!(refused("MessageSent", "2", "{\"message_id\":").contains("does not match"));
    assert!(refused("MessageSent", "2", "{}").contains("does not match"));
    assert!(refused("MessageSent", "1", "not json").contains("not JSON"));
}
