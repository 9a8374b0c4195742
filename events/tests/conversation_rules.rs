//! Given/when/then tests of every command and every rule of the Conversation aggregate.

mod common;

use common::*;
use events::ConversationCommand::*;
use events::{
    Actor, ConversationCommand, ConversationError, ConversationEvent, MessageType, NewMessage,
};

fn forbidden() -> impl Fn(Result<Vec<ConversationEvent>, ConversationError>) {
    |result| match result {
        Err(ConversationError::Forbidden(_)) => {}
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

fn conflict() -> impl Fn(Result<Vec<ConversationEvent>, ConversationError>) {
    |result| match result {
        Err(ConversationError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}

fn invalid() -> impl Fn(Result<Vec<ConversationEvent>, ConversationError>) {
    |result| match result {
        Err(ConversationError::Validation(_)) => {}
        other => panic!("expected Validation, got {other:?}"),
    }
}

fn send(actor: Actor, message: NewMessage) -> ConversationCommand {
    SendMessage { actor, message }
}

/// Every command this actor could issue on an opened conversation, with valid input.
fn every_command_on_an_opened_conversation(actor: Actor) -> Vec<ConversationCommand> {
    vec![
        send(actor.clone(), text("hello")),
        MarkMessagesRead {
            actor: actor.clone(),
            message_ids: vec![1],
        },
        CloseConversation {
            actor: actor.clone(),
        },
        ReopenConversation {
            actor: actor.clone(),
        },
        ArchiveConversation {
            actor: actor.clone(),
        },
        AssignConversation {
            actor: actor.clone(),
            admin_id: 1,
        },
        GiveFeedback {
            actor: actor.clone(),
            rating: 5,
            comment: None,
        },
        UploadFile {
            actor,
            file: upload('9', MessageType::File),
        },
    ]
}

mod open_conversation {
    use super::*;

    #[test]
    fn a_user_opens_a_conversation() {
        // arrange
        let given = framework(1).given_no_previous_events();
        // act
        let result = given.when(OpenConversation {
            actor: user(),
            conversation_id: CONVERSATION,
            initial_message: None,
        });
        // assert
        result.then_expect_events(vec![opened()]);
    }

    #[test]
    fn a_user_opens_a_conversation_with_an_initial_message() {
        let given = framework(7).given_no_previous_events();

        let result = given.when(OpenConversation {
            actor: user(),
            conversation_id: CONVERSATION,
            initial_message: Some(text("Hello, I need help")),
        });

        result.then_expect_events(vec![opened(), sent(7, user(), "Hello, I need help")]);
    }

    #[test]
    fn an_initial_message_is_validated_like_any_other_message() {
        let given = framework(7).given_no_previous_events();

        let result = given.when(OpenConversation {
            actor: user(),
            conversation_id: CONVERSATION,
            initial_message: Some(text("   ")),
        });

        result.then_expect_error(ConversationError::EmptyMessage);
    }

    #[test]
    fn an_initial_image_without_a_file_id_is_invalid() {
        let result = framework(7)
            .given_no_previous_events()
            .when(OpenConversation {
                actor: user(),
                conversation_id: CONVERSATION,
                initial_message: Some(with_file(MessageType::Image, "", None)),
            })
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn an_initial_system_message_from_a_user_is_forbidden() {
        let result = framework(7)
            .given_no_previous_events()
            .when(OpenConversation {
                actor: user(),
                conversation_id: CONVERSATION,
                initial_message: Some(with_file(MessageType::System, "hi", None)),
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn an_admin_may_not_open_a_conversation() {
        let result = framework(1)
            .given_no_previous_events()
            .when(OpenConversation {
                actor: admin(),
                conversation_id: CONVERSATION,
                initial_message: None,
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn the_system_may_not_open_a_conversation() {
        let result = framework(1)
            .given_no_previous_events()
            .when(OpenConversation {
                actor: system(),
                conversation_id: CONVERSATION,
                initial_message: None,
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn an_auditor_may_not_open_a_conversation() {
        let result = framework(1)
            .given_no_previous_events()
            .when(OpenConversation {
                actor: auditor(),
                conversation_id: CONVERSATION,
                initial_message: None,
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn opening_a_conversation_that_exists_is_a_conflict() {
        let result = framework(1)
            .given(active())
            .when(OpenConversation {
                actor: user(),
                conversation_id: CONVERSATION,
                initial_message: None,
            })
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn a_user_with_another_active_conversation_may_not_open_a_second_one() {
        let result = framework_with_other_active(1)
            .given_no_previous_events()
            .when(OpenConversation {
                actor: user(),
                conversation_id: CONVERSATION,
                initial_message: None,
            })
            .inspect_result();

        assert_eq!(
            result,
            Err(ConversationError::Conflict(
                "user already has an active conversation".into()
            ))
        );
    }

    #[test]
    fn a_conversation_id_of_zero_is_invalid() {
        let result = framework(1)
            .given_no_previous_events()
            .when(OpenConversation {
                actor: user(),
                conversation_id: 0,
                initial_message: None,
            })
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn a_conversation_id_beyond_two_to_the_53_is_invalid() {
        let result = framework(1)
            .given_no_previous_events()
            .when(OpenConversation {
                actor: user(),
                conversation_id: 1 << 53,
                initial_message: None,
            })
            .inspect_result();

        invalid()(result);
    }
}

mod send_message {
    use super::*;

    #[test]
    fn a_user_sends_a_message_to_their_active_conversation() {
        let given = framework(5).given(active());

        let result = given.when(send(user(), text("Where is my order?")));

        result.then_expect_events(vec![sent(5, user(), "Where is my order?")]);
    }

    #[test]
    fn an_admin_replies_to_an_active_conversation() {
        framework(6)
            .given(vec![opened(), sent(5, user(), "hi")])
            .when(send(admin(), text("How can I help?")))
            .then_expect_events(vec![sent(6, admin(), "How can I help?")]);
    }

    #[test]
    fn the_system_sends_a_system_message() {
        framework(6)
            .given(active())
            .when(send(
                system(),
                with_file(
                    MessageType::System,
                    "An agent will be with you shortly",
                    None,
                ),
            ))
            .then_expect_events(vec![ConversationEvent::MessageSent {
                message_id: 6,
                sender: system(),
                message_type: MessageType::System,
                content: "An agent will be with you shortly".into(),
                file_id: None,
                client_msg_id: None,
                file_path: None,
                attachment: None,
            }]);
    }

    #[test]
    fn the_system_may_send_plain_text_like_an_admin() {
        framework(6)
            .given(active())
            .when(send(system(), text("ping")))
            .then_expect_events(vec![sent(6, system(), "ping")]);
    }

    #[test]
    fn an_admin_may_not_send_a_system_message() {
        let result = framework(6)
            .given(active())
            .when(send(admin(), with_file(MessageType::System, "x", None)))
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn a_user_may_not_send_a_system_message() {
        let result = framework(6)
            .given(active())
            .when(send(user(), with_file(MessageType::System, "x", None)))
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn a_user_message_to_a_closed_conversation_reopens_it() {
        framework(9)
            .given(closed())
            .when(send(user(), text("one more thing")))
            .then_expect_events(vec![reopened_by(user()), sent(9, user(), "one more thing")]);
    }

    #[test]
    fn a_user_message_to_a_closed_conversation_is_refused_while_another_is_active() {
        let result = framework_with_other_active(9)
            .given(closed())
            .when(send(user(), text("one more thing")))
            .inspect_result();

        assert_eq!(
            result,
            Err(ConversationError::Conflict(
                "user already has an active conversation".into()
            ))
        );
    }

    #[test]
    fn an_admin_message_to_a_closed_conversation_is_a_conflict() {
        let result = framework(9)
            .given(closed())
            .when(send(admin(), text("are you there?")))
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn a_system_message_to_a_closed_conversation_is_a_conflict() {
        let result = framework(9)
            .given(closed())
            .when(send(system(), with_file(MessageType::System, "bye", None)))
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn a_user_message_to_an_archived_conversation_is_a_conflict() {
        let result = framework(9)
            .given(archived())
            .when(send(user(), text("hello?")))
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn an_admin_message_to_an_archived_conversation_is_a_conflict() {
        let result = framework(9)
            .given(archived())
            .when(send(admin(), text("hello?")))
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn a_message_to_a_conversation_that_was_never_opened_is_not_found() {
        framework(1)
            .given_no_previous_events()
            .when(send(user(), text("hello")))
            .then_expect_error(ConversationError::NotFound);
    }

    #[test]
    fn a_user_may_not_write_to_someone_elses_conversation() {
        let result = framework(5)
            .given(active())
            .when(send(other_user(), text("hi")))
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn an_auditor_may_not_send_messages() {
        let result = framework(5)
            .given(active())
            .when(send(auditor(), text("hi")))
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn whitespace_only_content_is_an_empty_message() {
        framework(5)
            .given(active())
            .when(send(user(), text(" \n\t  ")))
            .then_expect_error(ConversationError::EmptyMessage);
    }

    #[test]
    fn empty_content_is_an_empty_message() {
        framework(5)
            .given(active())
            .when(send(user(), text("")))
            .then_expect_error(ConversationError::EmptyMessage);
    }

    #[test]
    fn content_made_only_of_control_characters_is_an_empty_message() {
        framework(5)
            .given(active())
            .when(send(user(), text("\u{0}\u{7}\u{1b}\r")))
            .then_expect_error(ConversationError::EmptyMessage);
    }

    #[test]
    fn content_of_5000_chars_is_accepted() {
        let content = "a".repeat(5000);

        framework(5)
            .given(active())
            .when(send(user(), text(&content)))
            .then_expect_events(vec![sent(5, user(), &content)]);
    }

    #[test]
    fn content_of_5001_chars_is_too_long() {
        let result = framework(5)
            .given(active())
            .when(send(user(), text(&"a".repeat(5001))))
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn the_length_limit_counts_characters_not_bytes() {
        let content = "你".repeat(5000);

        framework(5)
            .given(active())
            .when(send(user(), text(&content)))
            .then_expect_events(vec![sent(5, user(), &content)]);
    }

    #[test]
    fn surrounding_whitespace_does_not_count_and_is_stored_as_sent() {
        let content = format!("  {}\n", "a".repeat(5000));

        framework(5)
            .given(active())
            .when(send(user(), text(&content)))
            .then_expect_events(vec![sent(5, user(), &content)]);
    }

    #[test]
    fn control_characters_are_removed_but_newlines_and_tabs_are_kept() {
        framework(5)
            .given(active())
            .when(send(
                user(),
                text("a\u{0}b\u{7}\r\nc\td\u{1b}[31m\u{7f}e\u{85}"),
            ))
            .then_expect_events(vec![sent(5, user(), "ab\nc\td[31me")]);
    }

    #[test]
    fn markup_is_stored_literally() {
        let content = "<img src=x onerror=alert(1)>";

        framework(5)
            .given(active())
            .when(send(user(), text(content)))
            .then_expect_events(vec![sent(5, user(), content)]);
    }

    #[test]
    fn an_image_without_a_file_id_is_invalid() {
        let result = framework(5)
            .given(active())
            .when(send(user(), with_file(MessageType::Image, "look", None)))
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn a_file_message_with_a_blank_file_id_is_invalid() {
        let result = framework(5)
            .given(active())
            .when(send(user(), with_file(MessageType::File, "", Some("  "))))
            .inspect_result();

        invalid()(result);
    }

    fn with_uploads(uploads: Vec<ConversationEvent>) -> Vec<ConversationEvent> {
        let mut events = active();
        events.extend(uploads);
        events
    }

    #[test]
    fn an_image_may_come_without_a_caption_and_records_where_its_file_is() {
        let image = upload('a', MessageType::Image);
        let attached = image.attached();
        framework(5)
            .given(with_uploads(vec![uploaded(
                'a',
                MessageType::Image,
                user(),
            )]))
            .when(send(
                user(),
                with_file(MessageType::Image, "", Some(&image.file_id)),
            ))
            .then_expect_events(vec![ConversationEvent::MessageSent {
                message_id: 5,
                sender: user(),
                message_type: MessageType::Image,
                content: String::new(),
                file_id: Some(image.file_id),
                client_msg_id: None,
                file_path: Some(image.path),
                attachment: Some(attached),
            }]);
    }

    #[test]
    fn a_file_message_carries_its_file_id_and_caption() {
        let pdf = upload('b', MessageType::File);
        let attached = pdf.attached();
        framework(5)
            .given(with_uploads(vec![uploaded(
                'b',
                MessageType::File,
                admin(),
            )]))
            .when(send(
                admin(),
                with_file(MessageType::File, "the invoice", Some(&pdf.file_id)),
            ))
            .then_expect_events(vec![ConversationEvent::MessageSent {
                message_id: 5,
                sender: admin(),
                message_type: MessageType::File,
                content: "the invoice".into(),
                file_id: Some(pdf.file_id),
                client_msg_id: None,
                file_path: Some(pdf.path),
                attachment: Some(attached),
            }]);
    }

    #[test]
    fn a_file_id_that_was_never_uploaded_here_is_invalid() {
        let result = framework(5)
            .given(active())
            .when(send(
                user(),
                with_file(MessageType::Image, "", Some(&file_id('c'))),
            ))
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn a_file_uploaded_by_someone_else_is_forbidden() {
        let result = framework(5)
            .given(with_uploads(vec![uploaded(
                'd',
                MessageType::Image,
                admin(),
            )]))
            .when(send(
                user(),
                with_file(MessageType::Image, "", Some(&file_id('d'))),
            ))
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn a_file_uploaded_as_a_document_cannot_be_sent_as_an_image() {
        let result = framework(5)
            .given(with_uploads(vec![uploaded('e', MessageType::File, user())]))
            .when(send(
                user(),
                with_file(MessageType::Image, "", Some(&file_id('e'))),
            ))
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn an_image_caption_of_5001_chars_is_too_long() {
        let result = framework(5)
            .given(with_uploads(vec![uploaded(
                'f',
                MessageType::Image,
                user(),
            )]))
            .when(send(
                user(),
                with_file(MessageType::Image, &"a".repeat(5001), Some(&file_id('f'))),
            ))
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn a_text_message_may_not_carry_a_file_id() {
        let result = framework(5)
            .given(active())
            .when(send(user(), with_file(MessageType::Text, "hi", Some("f"))))
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn a_file_id_of_256_chars_is_invalid() {
        let too_long = framework(5)
            .given(active())
            .when(send(
                user(),
                with_file(MessageType::File, "", Some(&"f".repeat(256))),
            ))
            .inspect_result();

        invalid()(too_long);
    }

    #[test]
    fn the_client_msg_id_is_recorded_with_the_message() {
        framework(5)
            .given(active())
            .when(send(user(), text("hi").with_client_msg_id("c-1")))
            .then_expect_events(vec![ConversationEvent::MessageSent {
                message_id: 5,
                sender: user(),
                message_type: MessageType::Text,
                content: "hi".into(),
                file_id: None,
                client_msg_id: Some("c-1".into()),
                file_path: None,
                attachment: None,
            }]);
    }

    #[test]
    fn a_client_msg_id_of_64_chars_is_accepted() {
        let result = framework(5)
            .given(active())
            .when(send(user(), text("hi").with_client_msg_id("c".repeat(64))))
            .inspect_result();

        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn a_client_msg_id_of_65_chars_is_invalid() {
        let result = framework(5)
            .given(active())
            .when(send(user(), text("hi").with_client_msg_id("c".repeat(65))))
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn an_empty_client_msg_id_is_invalid() {
        let result = framework(5)
            .given(active())
            .when(send(user(), text("hi").with_client_msg_id("")))
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn a_client_msg_id_with_control_characters_is_invalid() {
        let result = framework(5)
            .given(active())
            .when(send(user(), text("hi").with_client_msg_id("a\nb")))
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn a_message_id_not_above_the_last_one_is_a_conflict() {
        let result = framework(5)
            .given(vec![opened(), sent(5, user(), "first")])
            .when(send(user(), text("second")))
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn a_message_id_of_zero_is_a_conflict() {
        let result = framework(0)
            .given(active())
            .when(send(user(), text("hi")))
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn ids_may_skip_values_used_by_other_conversations() {
        framework(1000)
            .given(vec![opened(), sent(5, user(), "first")])
            .when(send(user(), text("second")))
            .then_expect_events(vec![sent(1000, user(), "second")]);
    }

    #[test]
    fn not_found_comes_before_every_other_check() {
        framework(1)
            .given_no_previous_events()
            .when(send(auditor(), text("")))
            .then_expect_error(ConversationError::NotFound);
    }

    #[test]
    fn forbidden_comes_before_input_validation() {
        let result = framework(5)
            .given(active())
            .when(send(other_user(), text("")))
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn input_validation_comes_before_the_state_check() {
        framework(5)
            .given(archived())
            .when(send(user(), text("  ")))
            .then_expect_error(ConversationError::EmptyMessage);
    }
}

mod mark_messages_read {
    use super::*;

    fn with_messages_from_both_sides() -> Vec<ConversationEvent> {
        vec![
            opened(),
            sent(1, user(), "u1"),
            sent(2, admin(), "a2"),
            sent(3, user(), "u3"),
            sent(4, system(), "s4"),
            sent(5, other_admin(), "a5"),
        ]
    }

    #[test]
    fn a_user_marks_the_support_sides_messages_read() {
        framework(6)
            .given(with_messages_from_both_sides())
            .when(MarkMessagesRead {
                actor: user(),
                message_ids: vec![5, 4, 2],
            })
            .then_expect_events(vec![read(vec![2, 4, 5], user())]);
    }

    #[test]
    fn an_admin_marks_the_users_messages_read() {
        framework(6)
            .given(with_messages_from_both_sides())
            .when(MarkMessagesRead {
                actor: admin(),
                message_ids: vec![3, 1],
            })
            .then_expect_events(vec![read(vec![1, 3], admin())]);
    }

    #[test]
    fn the_system_marks_the_users_messages_read() {
        framework(6)
            .given(with_messages_from_both_sides())
            .when(MarkMessagesRead {
                actor: system(),
                message_ids: vec![1],
            })
            .then_expect_events(vec![read(vec![1], system())]);
    }

    #[test]
    fn marking_own_messages_read_counts_nothing() {
        framework(6)
            .given(with_messages_from_both_sides())
            .when(MarkMessagesRead {
                actor: user(),
                message_ids: vec![1, 3],
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_admin_marking_another_admins_messages_counts_nothing() {
        framework(6)
            .given(with_messages_from_both_sides())
            .when(MarkMessagesRead {
                actor: admin(),
                message_ids: vec![2, 4, 5],
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn already_read_messages_are_not_counted_twice() {
        let mut given = with_messages_from_both_sides();
        given.push(read(vec![2, 4], user()));

        framework(6)
            .given(given)
            .when(MarkMessagesRead {
                actor: user(),
                message_ids: vec![2, 4, 5],
            })
            .then_expect_events(vec![read(vec![5], user())]);
    }

    #[test]
    fn unknown_and_repeated_ids_are_ignored() {
        framework(6)
            .given(with_messages_from_both_sides())
            .when(MarkMessagesRead {
                actor: admin(),
                message_ids: vec![3, 3, 99, 0, 1, 3],
            })
            .then_expect_events(vec![read(vec![1, 3], admin())]);
    }

    #[test]
    fn an_empty_receipt_counts_nothing() {
        framework(6)
            .given(with_messages_from_both_sides())
            .when(MarkMessagesRead {
                actor: user(),
                message_ids: vec![],
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn messages_can_be_read_in_a_closed_conversation() {
        let mut given = with_messages_from_both_sides();
        given.push(closed_by(admin()));

        framework(6)
            .given(given)
            .when(MarkMessagesRead {
                actor: user(),
                message_ids: vec![2],
            })
            .then_expect_events(vec![read(vec![2], user())]);
    }

    #[test]
    fn messages_can_be_read_in_an_archived_conversation() {
        let mut given = with_messages_from_both_sides();
        given.push(archived_by(admin()));

        framework(6)
            .given(given)
            .when(MarkMessagesRead {
                actor: admin(),
                message_ids: vec![1],
            })
            .then_expect_events(vec![read(vec![1], admin())]);
    }

    #[test]
    fn a_receipt_of_1000_ids_is_accepted() {
        let result = framework(6)
            .given(with_messages_from_both_sides())
            .when(MarkMessagesRead {
                actor: user(),
                message_ids: (1..=1000).collect(),
            })
            .inspect_result();

        assert_eq!(result, Ok(vec![read(vec![2, 4, 5], user())]));
    }

    #[test]
    fn a_receipt_of_1001_ids_is_invalid() {
        let result = framework(6)
            .given(with_messages_from_both_sides())
            .when(MarkMessagesRead {
                actor: user(),
                message_ids: (1..=1001).collect(),
            })
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn a_user_may_not_mark_someone_elses_conversation_read() {
        let result = framework(6)
            .given(with_messages_from_both_sides())
            .when(MarkMessagesRead {
                actor: other_user(),
                message_ids: vec![2],
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn an_auditor_may_not_mark_messages_read() {
        let result = framework(6)
            .given(with_messages_from_both_sides())
            .when(MarkMessagesRead {
                actor: auditor(),
                message_ids: vec![1],
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn marking_read_in_a_conversation_that_was_never_opened_is_not_found() {
        framework(6)
            .given_no_previous_events()
            .when(MarkMessagesRead {
                actor: user(),
                message_ids: vec![1],
            })
            .then_expect_error(ConversationError::NotFound);
    }
}

mod close_conversation {
    use super::*;

    #[test]
    fn a_user_closes_their_active_conversation() {
        framework(1)
            .given(active())
            .when(CloseConversation { actor: user() })
            .then_expect_events(vec![closed_by(user())]);
    }

    #[test]
    fn an_admin_closes_an_active_conversation() {
        framework(1)
            .given(active())
            .when(CloseConversation { actor: admin() })
            .then_expect_events(vec![closed_by(admin())]);
    }

    #[test]
    fn the_system_closes_an_active_conversation() {
        framework(1)
            .given(active())
            .when(CloseConversation { actor: system() })
            .then_expect_events(vec![closed_by(system())]);
    }

    #[test]
    fn closing_a_closed_conversation_is_a_conflict() {
        let result = framework(1)
            .given(closed())
            .when(CloseConversation { actor: admin() })
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn closing_an_archived_conversation_is_a_conflict() {
        let result = framework(1)
            .given(archived())
            .when(CloseConversation { actor: user() })
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn a_user_may_not_close_someone_elses_conversation() {
        let result = framework(1)
            .given(active())
            .when(CloseConversation {
                actor: other_user(),
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn an_auditor_may_not_close_a_conversation() {
        let result = framework(1)
            .given(active())
            .when(CloseConversation { actor: auditor() })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn closing_a_conversation_that_was_never_opened_is_not_found() {
        framework(1)
            .given_no_previous_events()
            .when(CloseConversation { actor: admin() })
            .then_expect_error(ConversationError::NotFound);
    }
}

mod reopen_conversation {
    use super::*;

    #[test]
    fn an_admin_reopens_a_closed_conversation() {
        framework(1)
            .given(closed())
            .when(ReopenConversation { actor: admin() })
            .then_expect_events(vec![reopened_by(admin())]);
    }

    #[test]
    fn the_system_reopens_a_closed_conversation() {
        framework(1)
            .given(closed())
            .when(ReopenConversation { actor: system() })
            .then_expect_events(vec![reopened_by(system())]);
    }

    #[test]
    fn a_user_may_not_reopen_a_conversation() {
        let result = framework(1)
            .given(closed())
            .when(ReopenConversation { actor: user() })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn an_auditor_may_not_reopen_a_conversation() {
        let result = framework(1)
            .given(closed())
            .when(ReopenConversation { actor: auditor() })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn reopening_an_active_conversation_is_a_conflict() {
        let result = framework(1)
            .given(active())
            .when(ReopenConversation { actor: admin() })
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn reopening_an_archived_conversation_is_a_conflict() {
        let result = framework(1)
            .given(vec![opened(), closed_by(user()), archived_by(admin())])
            .when(ReopenConversation { actor: admin() })
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn reopening_is_refused_while_the_user_has_another_active_conversation() {
        let result = framework_with_other_active(1)
            .given(closed())
            .when(ReopenConversation { actor: admin() })
            .inspect_result();

        assert_eq!(
            result,
            Err(ConversationError::Conflict(
                "user already has an active conversation".into()
            ))
        );
    }

    #[test]
    fn reopening_a_conversation_that_was_never_opened_is_not_found() {
        framework(1)
            .given_no_previous_events()
            .when(ReopenConversation { actor: admin() })
            .then_expect_error(ConversationError::NotFound);
    }
}

mod archive_conversation {
    use super::*;

    #[test]
    fn an_admin_archives_an_active_conversation() {
        framework(1)
            .given(active())
            .when(ArchiveConversation { actor: admin() })
            .then_expect_events(vec![archived_by(admin())]);
    }

    #[test]
    fn an_admin_archives_a_closed_conversation() {
        framework(1)
            .given(closed())
            .when(ArchiveConversation { actor: admin() })
            .then_expect_events(vec![archived_by(admin())]);
    }

    #[test]
    fn the_system_archives_a_conversation() {
        framework(1)
            .given(closed())
            .when(ArchiveConversation { actor: system() })
            .then_expect_events(vec![archived_by(system())]);
    }

    #[test]
    fn archiving_an_archived_conversation_is_a_conflict() {
        let result = framework(1)
            .given(archived())
            .when(ArchiveConversation { actor: admin() })
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn a_user_may_not_archive_their_conversation() {
        let result = framework(1)
            .given(closed())
            .when(ArchiveConversation { actor: user() })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn an_auditor_may_not_archive_a_conversation() {
        let result = framework(1)
            .given(closed())
            .when(ArchiveConversation { actor: auditor() })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn archiving_a_conversation_that_was_never_opened_is_not_found() {
        framework(1)
            .given_no_previous_events()
            .when(ArchiveConversation { actor: admin() })
            .then_expect_error(ConversationError::NotFound);
    }

    #[test]
    fn archived_is_final() {
        for command in [
            CloseConversation { actor: admin() },
            ReopenConversation { actor: admin() },
            ArchiveConversation { actor: admin() },
            AssignConversation {
                actor: admin(),
                admin_id: 2,
            },
            send(admin(), text("hi")),
            send(user(), text("hi")),
        ] {
            let result = framework(9)
                .given(archived())
                .when(command)
                .inspect_result();

            conflict()(result);
        }
    }
}

mod assign_conversation {
    use super::*;

    fn assigned(admin_id: u64, by: Actor) -> ConversationEvent {
        ConversationEvent::ConversationAssigned { admin_id, by }
    }

    #[test]
    fn an_admin_assigns_a_conversation() {
        framework(1)
            .given(active())
            .when(AssignConversation {
                actor: admin(),
                admin_id: 2,
            })
            .then_expect_events(vec![assigned(2, admin())]);
    }

    #[test]
    fn the_system_assigns_a_conversation() {
        framework(1)
            .given(active())
            .when(AssignConversation {
                actor: system(),
                admin_id: 1,
            })
            .then_expect_events(vec![assigned(1, system())]);
    }

    #[test]
    fn a_closed_conversation_can_be_assigned() {
        framework(1)
            .given(closed())
            .when(AssignConversation {
                actor: admin(),
                admin_id: 1,
            })
            .then_expect_events(vec![assigned(1, admin())]);
    }

    #[test]
    fn an_assigned_conversation_can_be_reassigned() {
        framework(1)
            .given(vec![opened(), assigned(1, admin())])
            .when(AssignConversation {
                actor: admin(),
                admin_id: 2,
            })
            .then_expect_events(vec![assigned(2, admin())]);
    }

    #[test]
    fn assigning_the_admin_already_assigned_changes_nothing() {
        framework(1)
            .given(vec![opened(), assigned(2, admin())])
            .when(AssignConversation {
                actor: other_admin(),
                admin_id: 2,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_admin_id_of_zero_is_invalid() {
        let result = framework(1)
            .given(active())
            .when(AssignConversation {
                actor: admin(),
                admin_id: 0,
            })
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn assigning_an_archived_conversation_is_a_conflict() {
        let result = framework(1)
            .given(archived())
            .when(AssignConversation {
                actor: admin(),
                admin_id: 1,
            })
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn a_user_may_not_assign_a_conversation() {
        let result = framework(1)
            .given(active())
            .when(AssignConversation {
                actor: user(),
                admin_id: 1,
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn an_auditor_may_not_assign_a_conversation() {
        let result = framework(1)
            .given(active())
            .when(AssignConversation {
                actor: auditor(),
                admin_id: 1,
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn assigning_a_conversation_that_was_never_opened_is_not_found() {
        framework(1)
            .given_no_previous_events()
            .when(AssignConversation {
                actor: admin(),
                admin_id: 1,
            })
            .then_expect_error(ConversationError::NotFound);
    }
}

mod give_feedback {
    use super::*;

    fn feedback(rating: u8, comment: Option<&str>) -> ConversationEvent {
        ConversationEvent::FeedbackGiven {
            rating,
            comment: comment.map(str::to_string),
            by: user(),
        }
    }

    fn give(rating: u8, comment: Option<&str>) -> ConversationCommand {
        GiveFeedback {
            actor: user(),
            rating,
            comment: comment.map(str::to_string),
        }
    }

    #[test]
    fn a_user_rates_their_closed_conversation() {
        framework(1)
            .given(closed())
            .when(give(5, Some("Quick and kind")))
            .then_expect_events(vec![feedback(5, Some("Quick and kind"))]);
    }

    #[test]
    fn a_rating_without_a_comment_is_accepted() {
        framework(1)
            .given(closed())
            .when(give(1, None))
            .then_expect_events(vec![feedback(1, None)]);
    }

    #[test]
    fn a_blank_comment_becomes_no_comment() {
        framework(1)
            .given(closed())
            .when(give(3, Some("  \n ")))
            .then_expect_events(vec![feedback(3, None)]);
    }

    #[test]
    fn control_characters_are_removed_from_the_comment() {
        framework(1)
            .given(closed())
            .when(give(4, Some(" ok\u{0}\r\n\tthanks ")))
            .then_expect_events(vec![feedback(4, Some(" ok\n\tthanks "))]);
    }

    #[test]
    fn a_comment_of_1000_chars_after_trimming_is_accepted() {
        let comment = format!("  {}  ", "c".repeat(1000));

        framework(1)
            .given(closed())
            .when(give(4, Some(&comment)))
            .then_expect_events(vec![feedback(4, Some(&comment))]);
    }

    #[test]
    fn a_comment_of_1001_chars_is_invalid() {
        let result = framework(1)
            .given(closed())
            .when(give(4, Some(&"c".repeat(1001))))
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn a_rating_of_zero_is_invalid() {
        let result = framework(1)
            .given(closed())
            .when(give(0, None))
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn a_rating_of_six_is_invalid() {
        let result = framework(1)
            .given(closed())
            .when(give(6, None))
            .inspect_result();

        invalid()(result);
    }

    #[test]
    fn feedback_on_an_active_conversation_is_a_conflict() {
        let result = framework(1)
            .given(active())
            .when(give(5, None))
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn feedback_on_an_archived_conversation_is_a_conflict() {
        let result = framework(1)
            .given(vec![opened(), closed_by(user()), archived_by(admin())])
            .when(give(5, None))
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn feedback_twice_is_a_conflict() {
        let result = framework(1)
            .given(vec![opened(), closed_by(user()), feedback(5, None)])
            .when(give(4, None))
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn feedback_twice_is_a_conflict_even_after_reopen_and_close() {
        let result = framework(1)
            .given(vec![
                opened(),
                closed_by(user()),
                feedback(5, None),
                reopened_by(admin()),
                closed_by(admin()),
            ])
            .when(give(2, None))
            .inspect_result();

        conflict()(result);
    }

    #[test]
    fn an_admin_may_not_give_feedback() {
        let result = framework(1)
            .given(closed())
            .when(GiveFeedback {
                actor: admin(),
                rating: 5,
                comment: None,
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn the_system_may_not_give_feedback() {
        let result = framework(1)
            .given(closed())
            .when(GiveFeedback {
                actor: system(),
                rating: 5,
                comment: None,
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn a_user_may_not_rate_someone_elses_conversation() {
        let result = framework(1)
            .given(closed())
            .when(GiveFeedback {
                actor: other_user(),
                rating: 5,
                comment: None,
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn an_auditor_may_not_give_feedback() {
        let result = framework(1)
            .given(closed())
            .when(GiveFeedback {
                actor: auditor(),
                rating: 5,
                comment: None,
            })
            .inspect_result();

        forbidden()(result);
    }

    #[test]
    fn feedback_on_a_conversation_that_was_never_opened_is_not_found() {
        framework(1)
            .given_no_previous_events()
            .when(give(5, None))
            .then_expect_error(ConversationError::NotFound);
    }
}

mod who_may_write {
    use super::*;

    #[test]
    fn an_auditor_is_refused_every_command_in_every_state() {
        for given in [active(), closed(), archived()] {
            for command in every_command_on_an_opened_conversation(auditor()) {
                let result = framework(9)
                    .given(given.clone())
                    .when(command.clone())
                    .inspect_result();

                assert!(
                    matches!(result, Err(ConversationError::Forbidden(_))),
                    "{command:?} -> {result:?}"
                );
            }
        }
    }

    #[test]
    fn a_user_is_refused_every_command_on_someone_elses_conversation() {
        for given in [active(), closed(), archived()] {
            for command in every_command_on_an_opened_conversation(other_user()) {
                let result = framework(9)
                    .given(given.clone())
                    .when(command.clone())
                    .inspect_result();

                assert!(
                    matches!(result, Err(ConversationError::Forbidden(_))),
                    "{command:?} -> {result:?}"
                );
            }
        }
    }

    #[test]
    fn every_command_but_open_on_a_conversation_that_was_never_opened_is_not_found() {
        for actor in [user(), admin(), system(), auditor()] {
            for command in every_command_on_an_opened_conversation(actor) {
                framework(9)
                    .given_no_previous_events()
                    .when(command)
                    .then_expect_error(ConversationError::NotFound);
            }
        }
    }
}

mod upload_file {
    use super::*;

    fn upload_by(actor: Actor, tag: char, kind: MessageType) -> ConversationCommand {
        UploadFile {
            actor,
            file: upload(tag, kind),
        }
    }

    #[test]
    fn the_owner_and_the_support_side_may_upload() {
        for actor in [user(), admin(), system()] {
            framework(5)
                .given(active())
                .when(upload_by(actor.clone(), 'a', MessageType::Image))
                .then_expect_events(vec![uploaded('a', MessageType::Image, actor)]);
        }
    }

    #[test]
    fn a_closed_conversation_takes_uploads_and_an_archived_one_does_not() {
        framework(5)
            .given(closed())
            .when(upload_by(user(), 'a', MessageType::File))
            .then_expect_events(vec![uploaded('a', MessageType::File, user())]);
        let result = framework(5)
            .given(archived())
            .when(upload_by(user(), 'a', MessageType::File))
            .inspect_result();
        conflict()(result);
    }

    #[test]
    fn another_user_and_an_auditor_are_forbidden() {
        for actor in [other_user(), auditor()] {
            let result = framework(5)
                .given(active())
                .when(upload_by(actor, 'a', MessageType::Image))
                .inspect_result();
            forbidden()(result);
        }
    }

    #[test]
    fn a_file_id_is_used_once() {
        let result = framework(5)
            .given(vec![opened(), uploaded('a', MessageType::Image, user())])
            .when(upload_by(admin(), 'a', MessageType::File))
            .inspect_result();
        conflict()(result);
    }

    #[test]
    fn only_image_and_file_uploads_with_hex_ids_are_valid() {
        for kind in [MessageType::Text, MessageType::System] {
            let result = framework(5)
                .given(active())
                .when(upload_by(user(), 'a', kind))
                .inspect_result();
            invalid()(result);
        }
        for bad_id in ["short", &"g".repeat(32), &"a/".repeat(16)] {
            let mut file = upload('a', MessageType::Image);
            file.file_id = bad_id.to_string();
            let result = framework(5)
                .given(active())
                .when(UploadFile {
                    actor: user(),
                    file,
                })
                .inspect_result();
            invalid()(result);
        }
    }

    #[test]
    fn the_original_name_loses_control_characters_and_is_bounded() {
        let mut file = upload('a', MessageType::File);
        file.original_name = format!("in\u{0}voice\n{}", "x".repeat(400));
        let mut expected = file.clone();
        expected.original_name = format!("invoice {}", "x".repeat(400))
            .chars()
            .take(255)
            .collect();
        framework(5)
            .given(active())
            .when(UploadFile {
                actor: user(),
                file,
            })
            .then_expect_events(vec![ConversationEvent::FileUploaded {
                file: expected,
                by: user(),
            }]);
    }

    #[test]
    fn an_upload_to_a_conversation_that_was_never_opened_is_not_found() {
        framework(5)
            .given_no_previous_events()
            .when(upload_by(user(), 'a', MessageType::Image))
            .then_expect_error(ConversationError::NotFound);
    }
}

mod erase {
    use super::*;

    fn erase(actor: Actor, reason: &str) -> ConversationCommand {
        EraseConversation {
            actor,
            reason: reason.into(),
        }
    }

    fn erased_by(by: Actor) -> ConversationEvent {
        ConversationEvent::ConversationErased {
            reason: "a request".into(),
            by,
        }
    }

    #[test]
    fn an_active_conversation_is_closed_then_erased() {
        let result = framework(9)
            .given(active())
            .when(erase(admin(), "  a request "));
        result.then_expect_events(vec![closed_by(admin()), erased_by(admin())]);
    }

    #[test]
    fn a_closed_or_archived_one_is_erased_as_it_is_and_the_system_may_erase() {
        framework(9)
            .given(closed())
            .when(erase(system(), "a request"))
            .then_expect_events(vec![erased_by(system())]);
        framework(9)
            .given(archived())
            .when(erase(admin(), "a request"))
            .then_expect_events(vec![erased_by(admin())]);
    }

    #[test]
    fn erasing_twice_writes_nothing() {
        let mut history = closed();
        history.push(erased_by(admin()));
        framework(9)
            .given(history)
            .when(erase(other_admin(), "again"))
            .then_expect_events(vec![]);
    }

    #[test]
    fn only_staff_erase_and_a_reason_is_required() {
        for actor in [user(), auditor()] {
            forbidden()(
                framework(9)
                    .given(active())
                    .when(erase(actor, "a request"))
                    .inspect_result(),
            );
        }
        for reason in ["", "   ", &"x".repeat(501)] {
            invalid()(
                framework(9)
                    .given(active())
                    .when(erase(admin(), reason))
                    .inspect_result(),
            );
        }
    }

    #[test]
    fn nothing_that_writes_typed_text_is_accepted_once_erased() {
        let mut history = closed();
        history.push(erased_by(admin()));
        for command in [
            send(user(), text("am I still here?")),
            ReopenConversation { actor: admin() },
            GiveFeedback {
                actor: user(),
                rating: 5,
                comment: Some("hello".into()),
            },
            UploadFile {
                actor: user(),
                file: upload('a', MessageType::File),
            },
        ] {
            conflict()(
                framework(9)
                    .given(history.clone())
                    .when(command)
                    .inspect_result(),
            );
        }
    }
}

mod edit_and_delete {
    use super::*;
    use events::SentMessage;

    const SENT_AT: i64 = 1_000_000_000;

    /// Message 5, a text the user sent, as the command layer looks it up `age_secs` later
    /// (window 900 s).
    fn users_text(age_secs: i64) -> SentMessage {
        message_of(user(), MessageType::Text, age_secs)
    }

    fn message_of(sender: Actor, message_type: MessageType, age_secs: i64) -> SentMessage {
        SentMessage {
            message_id: 5,
            sender_role: sender.role,
            sender_id: sender.id,
            message_type,
            sent_at_micros: SENT_AT,
            now_micros: SENT_AT + age_secs * 1_000_000,
            edit_window_secs: 900,
        }
    }

    fn with_message(sender: Actor) -> Vec<ConversationEvent> {
        vec![opened(), sent(5, sender, "helo")]
    }

    fn edit(actor: Actor, message: SentMessage, content: &str) -> ConversationCommand {
        EditMessage {
            actor,
            message,
            content: content.into(),
        }
    }

    fn delete(actor: Actor, message: SentMessage, reason: Option<&str>) -> ConversationCommand {
        DeleteMessage {
            actor,
            message,
            reason: reason.map(String::from),
        }
    }

    fn deleted_by(by: Actor, reason: Option<&str>) -> ConversationEvent {
        ConversationEvent::MessageDeleted {
            message_id: 5,
            by,
            reason: reason.map(String::from),
        }
    }

    #[test]
    fn a_sender_edits_their_text_within_the_window() {
        framework(9)
            .given(with_message(user()))
            .when(edit(user(), users_text(899), " hello\u{202E} "))
            .then_expect_events(vec![ConversationEvent::MessageEdited {
                message_id: 5,
                content: " hello ".into(),
                by: user(),
            }]);
    }

    #[test]
    fn only_the_sender_edits_and_only_text() {
        for actor in [other_user(), admin(), auditor()] {
            forbidden()(
                framework(9)
                    .given(with_message(user()))
                    .when(edit(actor, users_text(1), "mine now"))
                    .inspect_result(),
            );
        }
        invalid()(
            framework(9)
                .given(with_message(user()))
                .when(edit(
                    user(),
                    message_of(user(), MessageType::Image, 1),
                    "caption",
                ))
                .inspect_result(),
        );
    }

    #[test]
    fn an_edit_needs_text_within_the_limit() {
        let empty = framework(9)
            .given(with_message(user()))
            .when(edit(user(), users_text(1), "  \n "))
            .inspect_result();
        assert_eq!(empty, Err(ConversationError::EmptyMessage));
        invalid()(
            framework(9)
                .given(with_message(user()))
                .when(edit(user(), users_text(1), &"x".repeat(5001)))
                .inspect_result(),
        );
    }

    #[test]
    fn after_the_window_a_deleted_message_or_an_archived_conversation_nothing_changes() {
        conflict()(
            framework(9)
                .given(with_message(user()))
                .when(edit(user(), users_text(901), "too late"))
                .inspect_result(),
        );
        conflict()(
            framework(9)
                .given(with_message(user()))
                .when(delete(user(), users_text(901), None))
                .inspect_result(),
        );
        let mut gone = with_message(user());
        gone.push(deleted_by(user(), None));
        conflict()(
            framework(9)
                .given(gone.clone())
                .when(edit(user(), users_text(1), "back"))
                .inspect_result(),
        );
        conflict()(
            framework(9)
                .given(gone)
                .when(delete(admin(), users_text(1), Some("spam")))
                .inspect_result(),
        );
        let mut archived = with_message(user());
        archived.push(archived_by(admin()));
        conflict()(
            framework(9)
                .given(archived)
                .when(edit(user(), users_text(1), "late"))
                .inspect_result(),
        );
    }

    #[test]
    fn a_sender_withdraws_their_message_without_a_reason() {
        framework(9)
            .given(with_message(user()))
            .when(delete(
                user(),
                users_text(10),
                Some("a user's words stay out"),
            ))
            .then_expect_events(vec![deleted_by(user(), None)]);
    }

    #[test]
    fn staff_remove_anyones_message_at_any_time_with_a_reason() {
        framework(9)
            .given(with_message(user()))
            .when(delete(admin(), users_text(100_000), Some(" spam ")))
            .then_expect_events(vec![deleted_by(admin(), Some("spam"))]);
        for reason in [None, Some("   ")] {
            invalid()(
                framework(9)
                    .given(with_message(user()))
                    .when(delete(admin(), users_text(1), reason))
                    .inspect_result(),
            );
        }
        invalid()(
            framework(9)
                .given(with_message(user()))
                .when(delete(admin(), users_text(1), Some(&"x".repeat(501))))
                .inspect_result(),
        );
        // Their own, within the window, needs no reason.
        framework(9)
            .given(with_message(admin()))
            .when(delete(
                admin(),
                message_of(admin(), MessageType::Text, 1),
                None,
            ))
            .then_expect_events(vec![deleted_by(admin(), None)]);
    }

    #[test]
    fn users_and_auditors_cannot_remove_what_others_sent() {
        for actor in [other_user(), auditor()] {
            forbidden()(
                framework(9)
                    .given(with_message(user()))
                    .when(delete(actor, users_text(1), None))
                    .inspect_result(),
            );
        }
        forbidden()(
            framework(9)
                .given(with_message(admin()))
                .when(delete(
                    user(),
                    message_of(admin(), MessageType::Text, 1),
                    None,
                ))
                .inspect_result(),
        );
    }

    #[test]
    fn a_message_not_in_the_conversation_is_refused() {
        invalid()(
            framework(9)
                .given(active())
                .when(edit(user(), users_text(1), "nothing here"))
                .inspect_result(),
        );
        let nowhere = framework(9)
            .given_no_previous_events()
            .when(edit(user(), users_text(1), "nothing here"))
            .inspect_result();
        assert_eq!(nowhere, Err(ConversationError::NotFound));
    }

    #[test]
    fn nothing_changes_in_an_erased_conversation() {
        let mut erased = with_message(user());
        erased.push(closed_by(admin()));
        erased.push(ConversationEvent::ConversationErased {
            reason: "a request".into(),
            by: admin(),
        });
        conflict()(
            framework(9)
                .given(erased)
                .when(edit(user(), users_text(1), "again"))
                .inspect_result(),
        );
    }
}
