//! Event serialization (the store keeps type and payload apart), the small vocabularies, error
//! codes, command accessors, and the state the aggregate folds.

mod common;

use std::str::FromStr;

use common::*;
use cqrs_es::{Aggregate, DomainEvent};
use events::{
    AttachedFile, Conversation, ConversationCommand, ConversationError, ConversationEvent,
    ConversationStatus, EVENT_TYPES, MessageType, NewMessage, Role, UnknownEvent, sanitize_content,
};
use serde_json::json;

fn one_of_each_event() -> Vec<ConversationEvent> {
    vec![
        opened(),
        ConversationEvent::MessageSent {
            message_id: 7,
            sender: user(),
            message_type: MessageType::Image,
            content: "caption\nline two".into(),
            file_id: Some("f_123".into()),
            client_msg_id: Some("c-1".into()),
            file_path: Some("uploads/chat/2026/11/25/f_123.png".into()),
            attachment: Some(AttachedFile {
                name: "photo.png".into(),
                size: 2048,
                mime_type: "image/png".into(),
                width: Some(640),
                height: Some(480),
            }),
        },
        read(vec![7, 9], admin()),
        closed_by(user()),
        reopened_by(admin()),
        archived_by(system()),
        ConversationEvent::ConversationAssigned {
            admin_id: 2,
            by: admin(),
        },
        ConversationEvent::FeedbackGiven {
            rating: 4,
            comment: Some("thanks".into()),
            by: user(),
        },
        uploaded('a', MessageType::Image, user()),
        ConversationEvent::ConversationErased {
            reason: "request under GDPR article 17".into(),
            by: admin(),
        },
        ConversationEvent::MessageEdited {
            message_id: 7,
            content: "hi, corrected".into(),
            by: user(),
        },
        ConversationEvent::MessageDeleted {
            message_id: 7,
            by: admin(),
            reason: Some("spam".into()),
        },
    ]
}

#[test]
fn every_event_round_trips_through_type_and_payload() {
    for event in one_of_each_event() {
        // arrange
        let event_type = event.event_type();
        let payload = event.payload_json();
        // act
        let back = ConversationEvent::from_parts(&event_type, payload);
        // assert
        assert_eq!(back, Ok(event));
    }
}

#[test]
fn every_event_round_trips_through_its_full_serde_form() {
    for event in one_of_each_event() {
        let json = serde_json::to_string(&event).expect("serialize");

        let back: ConversationEvent = serde_json::from_str(&json).expect("deserialize");

        assert_eq!(back, event);
    }
}

#[test]
fn event_types_are_the_stable_names() {
    let types: Vec<String> = one_of_each_event().iter().map(|e| e.event_type()).collect();

    assert_eq!(types, EVENT_TYPES.map(str::to_string).to_vec());
}

#[test]
fn message_sent_is_version_2_and_every_other_event_version_1() {
    for event in one_of_each_event() {
        let expected = if event.event_type() == "MessageSent" {
            "2"
        } else {
            "1"
        };

        assert_eq!(event.event_version(), expected, "{}", event.event_type());
        assert_eq!(
            ConversationEvent::current_version(&event.event_type()),
            Some(expected)
        );
    }
}

#[test]
fn the_payload_is_only_the_variants_fields() {
    let event = sent(7, user(), "hi");

    let payload = event.payload_json();

    assert_eq!(
        payload,
        json!({
            "message_id": 7,
            "sender": {"id": 42, "role": "user", "identifier": "user_uuid_42"},
            "message_type": "text",
            "content": "hi",
            "file_id": null,
            "client_msg_id": null
        })
    );
}

#[test]
fn an_unknown_event_type_is_refused_with_a_clear_message() {
    let result = ConversationEvent::from_parts("MessagePinned", json!({}));

    let err = result.expect_err("unknown type must fail");
    assert_eq!(err.event_type, "MessagePinned");
    assert!(err.to_string().contains("unknown event type"), "{err}");
}

#[test]
fn a_payload_of_the_wrong_shape_is_refused() {
    let result = ConversationEvent::from_parts("MessageSent", json!({"message_id": "x"}));

    assert!(matches!(result, Err(UnknownEvent { .. })), "{result:?}");
}

#[test]
fn roles_statuses_and_message_types_use_lowercase_names() {
    for role in [Role::User, Role::Admin, Role::Auditor, Role::System] {
        assert_eq!(
            serde_json::to_value(role).expect("ser"),
            json!(role.as_str())
        );
        assert_eq!(Role::from_str(role.as_str()), Ok(role));
    }
    for status in [
        ConversationStatus::Active,
        ConversationStatus::Closed,
        ConversationStatus::Archived,
    ] {
        assert_eq!(
            serde_json::to_value(status).expect("ser"),
            json!(status.as_str())
        );
        assert_eq!(ConversationStatus::from_str(status.as_str()), Ok(status));
    }
    for kind in [
        MessageType::Text,
        MessageType::Image,
        MessageType::File,
        MessageType::System,
    ] {
        assert_eq!(
            serde_json::to_value(kind).expect("ser"),
            json!(kind.as_str())
        );
        assert_eq!(MessageType::from_str(kind.as_str()), Ok(kind));
    }
}

#[test]
fn an_unknown_status_or_message_type_is_a_validation_error() {
    assert!(matches!(
        ConversationStatus::from_str("deleted"),
        Err(ConversationError::Validation(_))
    ));
    assert!(matches!(
        MessageType::from_str("video"),
        Err(ConversationError::Validation(_))
    ));
    assert!(matches!(
        ConversationStatus::from_str("Active"),
        Err(ConversationError::Validation(_))
    ));
}

#[test]
fn error_codes_are_the_contracts_codes() {
    let codes: Vec<&str> = [
        ConversationError::NotFound,
        ConversationError::Forbidden("x".into()),
        ConversationError::Conflict("x".into()),
        ConversationError::EmptyMessage,
        ConversationError::Validation("x".into()),
    ]
    .iter()
    .map(ConversationError::code)
    .collect();

    assert_eq!(
        codes,
        [
            "NOT_FOUND",
            "FORBIDDEN",
            "CONFLICT",
            "EMPTY_MESSAGE",
            "VALIDATION_ERROR"
        ]
    );
}

#[test]
fn a_command_names_its_actor_and_client_msg_id() {
    let send = ConversationCommand::SendMessage {
        actor: admin(),
        message: NewMessage::text("hi").with_client_msg_id("c-9"),
    };
    let open = ConversationCommand::OpenConversation {
        actor: user(),
        conversation_id: CONVERSATION,
        initial_message: Some(NewMessage::text("hi").with_client_msg_id("c-1")),
    };
    let close = ConversationCommand::CloseConversation { actor: user() };

    assert_eq!(send.actor(), &admin());
    assert_eq!(send.client_msg_id(), Some("c-9"));
    assert_eq!(open.client_msg_id(), Some("c-1"));
    assert_eq!(close.actor(), &user());
    assert_eq!(close.client_msg_id(), None);
}

#[test]
fn sanitize_content_removes_control_characters_only() {
    assert_eq!(
        sanitize_content("\u{0}a\r\n\tb\u{7f}\u{9b} c "),
        "a\n\tb c "
    );
}

#[test]
fn sanitize_content_removes_bidirectional_controls_and_keeps_the_marks() {
    assert_eq!(
        sanitize_content(
            "a\u{202A}b\u{202B}c\u{202C}d\u{202D}e\u{202E}f\u{2066}g\u{2067}h\u{2068}i\u{2069}j"
        ),
        "abcdefghij"
    );
    assert_eq!(
        sanitize_content("\u{200E}x\u{200F}y\u{061C}"),
        "\u{200E}x\u{200F}y\u{061C}"
    );
}

fn fold(events: Vec<ConversationEvent>) -> Conversation {
    let mut conversation = Conversation::default();
    for event in events {
        conversation.apply(event);
    }
    conversation
}

#[test]
fn a_conversation_that_was_never_opened_has_no_state() {
    let conversation = Conversation::default();

    assert_eq!(conversation.id(), None);
    assert_eq!(conversation.user_id(), None);
    assert_eq!(conversation.status(), None);
    assert_eq!(conversation.admin_id(), None);
    assert_eq!(conversation.last_message_id(), None);
    assert_eq!(conversation.message_count(), 0);
}

#[test]
fn the_aggregate_folds_the_facts_the_command_layer_reads() {
    let conversation = fold(vec![
        opened(),
        sent(3, user(), "a"),
        sent(8, admin(), "b"),
        sent(9, user(), "c"),
        read(vec![3], admin()),
        ConversationEvent::ConversationAssigned {
            admin_id: 1,
            by: admin(),
        },
        closed_by(admin()),
    ]);

    assert_eq!(conversation.id(), Some(CONVERSATION));
    assert_eq!(conversation.user_id(), Some(42));
    assert_eq!(conversation.user(), Some(&user()));
    assert_eq!(conversation.status(), Some(ConversationStatus::Closed));
    assert_eq!(conversation.admin_id(), Some(1));
    assert_eq!(conversation.last_message_id(), Some(9));
    assert_eq!(conversation.message_count(), 3);
    assert_eq!(
        conversation
            .unread_by_staff()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [9]
    );
    assert_eq!(
        conversation
            .unread_by_user()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [8]
    );
    assert!(!conversation.feedback_given());
}

#[test]
fn read_messages_are_forgotten_so_state_stays_small() {
    let mut events = vec![opened()];
    for id in 1..=500 {
        events.push(sent(id, user(), "m"));
    }
    events.push(read((1..=500).collect(), admin()));

    let conversation = fold(events);

    assert!(conversation.unread_by_staff().is_empty());
    assert_eq!(conversation.message_count(), 500);
}

#[test]
fn a_snapshot_of_the_aggregate_round_trips() {
    let conversation = fold(vec![
        opened(),
        sent(3, user(), "a"),
        sent(4, system(), "b"),
        closed_by(user()),
        ConversationEvent::FeedbackGiven {
            rating: 5,
            comment: None,
            by: user(),
        },
    ]);

    let snapshot = serde_json::to_value(&conversation).expect("serialize");
    let back: Conversation = serde_json::from_value(snapshot).expect("deserialize");

    assert_eq!(back, conversation);
    assert_eq!(Conversation::TYPE, "conversation");
}

#[test]
fn a_snapshot_keeps_unread_ids_as_runs_and_refuses_damaged_ones() {
    let mut events = vec![opened()];
    for id in (10..=2_009).chain([3_000, 3_002]) {
        events.push(sent(id, user(), "m"));
    }
    let conversation = fold(events);

    let snapshot = serde_json::to_value(&conversation).expect("serialize");
    assert_eq!(
        snapshot["unread_by_staff"],
        json!([[10, 2_009], [3_000, 3_000], [3_002, 3_002]])
    );
    let back: Conversation = serde_json::from_value(snapshot.clone()).expect("deserialize");
    assert_eq!(back, conversation);

    for damaged in [
        json!([[5, 4]]),
        json!([[1, 3], [3, 4]]),
        json!([[0, u64::MAX]]),
    ] {
        let mut snapshot = snapshot.clone();
        snapshot["unread_by_staff"] = damaged.clone();
        assert!(
            serde_json::from_value::<Conversation>(snapshot).is_err(),
            "{damaged} was accepted"
        );
    }
}
