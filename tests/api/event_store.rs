//! Store conformance: the same tests on SQLite and on MySQL.

use crate::support;

use chatd::commands::{CommandError, Intent};
use chatd::store::{CONVERSATION_STREAM, StoreError};
use events::{ConversationCommand, ConversationError, ConversationEvent, NewMessage};
use serde_json::json;
use support::raw_log::{append_raw, raw_event};
use support::*;

#[tokio::test]
async fn an_opened_conversation_and_its_first_message_are_read_back_in_order() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let alice = user(42);

        let opened = open_with(&bus, &alice, "Hello, I need help").await;

        assert!(opened.opened, "{}", db.name());
        assert_eq!(opened.events.len(), 2);
        let types: Vec<_> = opened
            .events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect();
        assert_eq!(types, ["ConversationOpened", "MessageSent"]);
        let stream = db
            .store
            .read_stream(CONVERSATION_STREAM, &opened.conversation_id.to_string(), 0)
            .await
            .unwrap();
        assert_eq!(stream, opened.events);
        assert_eq!(
            stream.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            [1, 2]
        );
        let log = db.store.read_from(0, 100).await.unwrap();
        assert_eq!(log, opened.events);
        assert_eq!(db.store.head_position().await.unwrap(), 2);
        let metadata = log[1].decode_metadata().unwrap();
        assert_eq!(
            (metadata.actor_id, metadata.actor_role.as_str()),
            (42, "user")
        );
        assert!(metadata.request_id.is_some());
        db.cleanup().await;
    }
}

#[tokio::test]
async fn message_ids_increase_within_a_conversation_and_are_unique_across_conversations() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let mut ids = Vec::new();
        for round in 0..3 {
            for user_id in [1, 2] {
                let committed = open_with(&bus, &user(user_id), &format!("round {round}")).await;
                let sent = committed.events.last().unwrap();
                ids.push((committed.conversation_id, message_id_of(sent)));
            }
        }
        let all: std::collections::BTreeSet<_> = ids.iter().map(|(_, id)| *id).collect();
        assert_eq!(all.len(), ids.len(), "{}: ids are unique", db.name());
        for conversation in [1, 2] {
            let mine: Vec<_> = ids
                .iter()
                .filter(|(c, _)| *c == conversation)
                .map(|(_, id)| *id)
                .collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "{}: {mine:?}",
                db.name()
            );
        }
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_retry_with_the_same_client_msg_id_returns_the_original_and_appends_nothing() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let alice = user(7);
        let message = NewMessage::text("only once").with_client_msg_id("c-1");
        let send = || {
            bus.execute(
                Intent::OpenOrContinue {
                    actor: alice.clone(),
                    message: Some(message.clone()),
                },
                meta(&alice),
            )
        };

        let first = send().await.unwrap();
        let head = db.store.head_position().await.unwrap();
        let retry = send().await.unwrap();
        let named_retry = bus
            .execute(
                Intent::On(
                    first.conversation_id,
                    ConversationCommand::SendMessage {
                        actor: alice.clone(),
                        message: message.clone(),
                    },
                ),
                meta(&alice),
            )
            .await
            .unwrap();

        assert!(
            !first.duplicate && retry.duplicate && named_retry.duplicate,
            "{}",
            db.name()
        );
        let original = first.events.last().unwrap();
        assert_eq!(retry.events, vec![original.clone()]);
        assert_eq!(named_retry.events, vec![original.clone()]);
        assert_eq!(
            db.store.head_position().await.unwrap(),
            head,
            "nothing appended"
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_retry_batched_with_other_sends_returns_its_original_and_the_others_append_once() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let opened = open_with(&bus, &user(1), "hi").await;
        let agent = admin(9);
        let send = |text: String, key: String| {
            let (bus, agent) = (bus.clone(), agent.clone());
            async move {
                let command = ConversationCommand::SendMessage {
                    actor: agent.clone(),
                    message: NewMessage::text(text).with_client_msg_id(key),
                };
                bus.execute(Intent::On(opened.conversation_id, command), meta(&agent))
                    .await
            }
        };
        let first = send("first".into(), "k-0".into()).await.unwrap();
        let head = db.store.head_position().await.unwrap();

        // Queued together, so the appender takes most of them as one batch with the retry.
        let mut sends: Vec<_> = (1..=20)
            .map(|n| tokio::spawn(send(format!("reply {n}"), format!("k-{n}"))))
            .collect();
        sends.insert(10, tokio::spawn(send("first".into(), "k-0".into())));
        let mut answers = Vec::new();
        for sent in sends {
            answers.push(sent.await.unwrap().unwrap());
        }

        let retry = answers.remove(10);
        assert!(retry.duplicate, "{}", db.name());
        assert_eq!(retry.events, first.events, "{}", db.name());
        assert!(answers.iter().all(|a| !a.duplicate && a.events.len() == 1));
        assert_eq!(
            db.store.head_position().await.unwrap(),
            head + 20,
            "{}: each new message once, the retry not at all",
            db.name()
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_retry_refused_now_still_gets_the_message_it_repeats() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let opened = open_with(&bus, &user(1), "hi").await;
        let agent = admin(9);
        let send = || {
            let command = ConversationCommand::SendMessage {
                actor: agent.clone(),
                message: NewMessage::text("on it").with_client_msg_id("a-1"),
            };
            bus.execute(Intent::On(opened.conversation_id, command), meta(&agent))
        };
        let sent = send().await.unwrap();
        let close = ConversationCommand::CloseConversation {
            actor: agent.clone(),
        };
        bus.execute(Intent::On(opened.conversation_id, close), meta(&agent))
            .await
            .unwrap();

        // The acknowledgement was lost; the conversation closed before the app sent it again.
        let retry = send().await.unwrap();
        assert!(retry.duplicate, "{}", db.name());
        assert_eq!(retry.events, sent.events, "{}", db.name());
        let fresh = bus
            .execute(
                Intent::On(
                    opened.conversation_id,
                    ConversationCommand::SendMessage {
                        actor: agent.clone(),
                        message: NewMessage::text("again").with_client_msg_id("a-2"),
                    },
                ),
                meta(&agent),
            )
            .await;
        assert!(
            matches!(fresh, Err(CommandError::Rejected(_))),
            "{}: a new message to a closed conversation is still refused: {fresh:?}",
            db.name()
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn the_same_client_msg_id_from_another_sender_is_a_new_message() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let opened = open_with(&bus, &user(1), "hi").await;
        let send = |actor: events::Actor| {
            bus.execute(
                Intent::On(
                    opened.conversation_id,
                    ConversationCommand::SendMessage {
                        actor: actor.clone(),
                        message: NewMessage::text("same key").with_client_msg_id("k"),
                    },
                ),
                meta(&actor),
            )
        };
        let from_user = send(user(1)).await.unwrap();
        let from_admin = send(admin(9)).await.unwrap();
        assert!(
            !from_user.duplicate && !from_admin.duplicate,
            "{}",
            db.name()
        );
        assert_ne!(from_user.events, from_admin.events);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_refused_command_writes_nothing() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let opened = open_with(&bus, &user(1), "hi").await;
        let head = db.store.head_position().await.unwrap();

        let by_auditor = bus
            .execute(
                Intent::On(
                    opened.conversation_id,
                    ConversationCommand::SendMessage {
                        actor: auditor(3),
                        message: NewMessage::text("no"),
                    },
                ),
                meta(&auditor(3)),
            )
            .await;
        let by_stranger = bus
            .execute(
                Intent::On(
                    opened.conversation_id,
                    ConversationCommand::CloseConversation { actor: user(2) },
                ),
                meta(&user(2)),
            )
            .await;
        let feedback_on_active = bus
            .execute(
                Intent::On(
                    opened.conversation_id,
                    ConversationCommand::GiveFeedback {
                        actor: user(1),
                        rating: 5,
                        comment: None,
                    },
                ),
                meta(&user(1)),
            )
            .await;
        let missing = bus
            .execute(
                Intent::On(
                    999,
                    ConversationCommand::CloseConversation { actor: admin(1) },
                ),
                meta(&admin(1)),
            )
            .await;

        assert!(matches!(
            by_auditor,
            Err(CommandError::Rejected(ConversationError::Forbidden(_)))
        ));
        assert!(matches!(
            by_stranger,
            Err(CommandError::Rejected(ConversationError::Forbidden(_)))
        ));
        assert!(matches!(
            feedback_on_active,
            Err(CommandError::Rejected(ConversationError::Conflict(_)))
        ));
        assert_eq!(
            missing,
            Err(CommandError::Rejected(ConversationError::NotFound))
        );
        assert_eq!(
            db.store.head_position().await.unwrap(),
            head,
            "{}",
            db.name()
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_user_has_at_most_one_active_conversation() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let alice = user(5);
        let first = open_with(&bus, &alice, "one").await;
        let again = open_with(&bus, &alice, "two").await;
        assert_eq!(
            again.conversation_id,
            first.conversation_id,
            "{}",
            db.name()
        );
        assert!(!again.opened);

        bus.execute(
            Intent::On(
                first.conversation_id,
                ConversationCommand::CloseConversation {
                    actor: alice.clone(),
                },
            ),
            meta(&alice),
        )
        .await
        .unwrap();
        let second = open_with(&bus, &alice, "three").await;
        assert!(second.opened);
        assert_ne!(second.conversation_id, first.conversation_id);

        // A message to the closed one would reopen it beside the active one: refused.
        let reopen = bus
            .execute(
                Intent::On(
                    first.conversation_id,
                    ConversationCommand::SendMessage {
                        actor: alice.clone(),
                        message: NewMessage::text("back"),
                    },
                ),
                meta(&alice),
            )
            .await;
        assert!(matches!(
            reopen,
            Err(CommandError::Rejected(ConversationError::Conflict(_)))
        ));
        db.cleanup().await;
    }
}

#[tokio::test]
async fn concurrent_senders_to_one_conversation_all_succeed() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let opened = open_with(&bus, &user(1), "start").await;
        let mut tasks = Vec::new();
        for n in 0..40u64 {
            let bus = bus.clone();
            let actor = if n % 2 == 0 { user(1) } else { admin(100 + n) };
            tasks.push(tokio::spawn(async move {
                bus.execute(
                    Intent::On(
                        opened.conversation_id,
                        ConversationCommand::SendMessage {
                            actor: actor.clone(),
                            message: NewMessage::text(format!("message {n}")),
                        },
                    ),
                    meta(&actor),
                )
                .await
            }));
        }
        for task in tasks {
            task.await
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: {e}", db.name()));
        }
        let stream = db
            .store
            .read_stream(CONVERSATION_STREAM, &opened.conversation_id.to_string(), 0)
            .await
            .unwrap();
        assert_eq!(stream.len(), 42);
        assert!(
            stream
                .iter()
                .enumerate()
                .all(|(i, e)| e.sequence == i as u64 + 1)
        );
        let ids: Vec<u64> = stream.iter().skip(1).map(message_id_of).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{}: {ids:?}",
            db.name()
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn an_append_at_a_taken_sequence_is_an_optimistic_lock_conflict() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let opened = open_with(&bus, &user(1), "hi").await;
        let stream = opened.conversation_id.to_string();
        let stale = raw_event(
            &stream,
            2,
            "ConversationClosed",
            "1",
            json!({"by": {"id": 1, "role": "user", "identifier": "u"}}),
        );

        let direct = append_raw(&db.store, std::slice::from_ref(&stale)).await;

        assert!(
            matches!(direct, Err(StoreError::Conflict { .. })),
            "{}: {direct:?}",
            db.name()
        );
        assert_eq!(db.store.head_position().await.unwrap(), 2);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn the_command_layer_sees_events_another_writer_appended() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let opened = open_with(&bus, &user(1), "hi").await;
        let stream = opened.conversation_id.to_string();
        // Another node closes the conversation behind this node's cache.
        append_raw(
            &db.store,
            &[raw_event(
                &stream,
                3,
                "ConversationClosed",
                "1",
                json!({"by": {"id": 9, "role": "admin", "identifier": "admin_9"}}),
            )],
        )
        .await
        .unwrap();

        let close_again = bus
            .execute(
                Intent::On(
                    opened.conversation_id,
                    ConversationCommand::CloseConversation { actor: admin(9) },
                ),
                meta(&admin(9)),
            )
            .await;

        assert!(
            matches!(
                close_again,
                Err(CommandError::Rejected(ConversationError::Conflict(_)))
            ),
            "{}: {close_again:?}",
            db.name()
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn the_hash_chain_verifies_and_a_changed_payload_is_detected() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let opened = open_with(&bus, &user(1), "hello there").await;
        for n in 0..3 {
            open_with(&bus, &user(1), &format!("more {n}")).await;
        }
        assert_eq!(
            db.store.verify_chains().await.unwrap(),
            None,
            "{}",
            db.name()
        );

        let target = &opened.events[1];
        let sql = "update events set payload = replace(payload, '\"text\"', '\"file\"') where position = ?";
        match &db.store {
            chatd::store::EventStore::MySql(s) => {
                sqlx::query(sql)
                    .bind(target.position as i64)
                    .execute(s.pool())
                    .await
                    .unwrap();
            }
            chatd::store::EventStore::Sqlite(s) => {
                sqlx::query(sql)
                    .bind(target.position as i64)
                    .execute(s.pool())
                    .await
                    .unwrap();
            }
        }

        let broken = db
            .store
            .verify_chains()
            .await
            .unwrap()
            .expect("the change is detected");
        assert_eq!(broken.stream_id, opened.conversation_id.to_string());
        assert_eq!(broken.sequence, 2);
        assert_eq!(broken.position, target.position);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_stored_v1_message_is_read_in_the_current_shape() {
    let sample: serde_json::Value = serde_json::from_str(include_str!(
        "../../events/tests/samples/message_sent_v1.json"
    ))
    .unwrap();
    for db in TestDb::each().await {
        let opened = json!({"conversation_id": 50, "user": {"id": 42, "role": "user", "identifier": "user_uuid_42"}});
        let stored = append_raw(
            &db.store,
            &[
                raw_event("50", 1, "ConversationOpened", "1", opened),
                raw_event("50", 2, "MessageSent", "1", sample.clone()),
            ],
        )
        .await
        .unwrap();

        let event = stored[1].decode().unwrap();

        let ConversationEvent::MessageSent {
            sender,
            content,
            message_type,
            ..
        } = event
        else {
            panic!("{}: not a MessageSent: {event:?}", db.name());
        };
        assert_eq!((sender.id, sender.role), (42, events::Role::User));
        assert_eq!(content, sample["message"].as_str().unwrap());
        assert_eq!(message_type, events::MessageType::Text);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn an_unknown_event_type_or_corrupt_json_is_a_clear_error_naming_the_position() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let opened =
            json!({"conversation_id": 60, "user": {"id": 1, "role": "user", "identifier": "u"}});
        let stored = append_raw(
            &db.store,
            &[
                raw_event("60", 1, "ConversationOpened", "1", opened),
                raw_event("60", 2, "ConversationTeleported", "1", json!({})),
            ],
        )
        .await
        .unwrap();

        let unknown = stored[1].decode();
        let mut corrupt = stored[0].clone();
        corrupt.payload = "{not json".into();

        assert!(
            matches!(unknown, Err(StoreError::Corrupt { position, .. }) if position == stored[1].position)
        );
        assert!(matches!(corrupt.decode(), Err(StoreError::Corrupt { .. })));
        let head = db.store.head_position().await.unwrap();
        let refused = bus
            .execute(
                Intent::On(
                    60,
                    ConversationCommand::CloseConversation { actor: admin(1) },
                ),
                meta(&admin(1)),
            )
            .await;
        assert!(
            matches!(refused, Err(CommandError::Internal(ref m)) if m.contains("position")),
            "{}: {refused:?}",
            db.name()
        );
        assert_eq!(
            db.store.head_position().await.unwrap(),
            head,
            "nothing written"
        );
        // The appender is still serving other conversations.
        open_with(&bus, &user(2), "still here").await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn commands_fail_cleanly_when_the_database_is_gone() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        db.store.close().await;

        let result = bus
            .execute(
                Intent::OpenOrContinue {
                    actor: user(1),
                    message: Some(text("anyone?")),
                },
                meta(&user(1)),
            )
            .await;

        assert!(
            matches!(result, Err(CommandError::Unavailable(_))),
            "{}: {result:?}",
            db.name()
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn migrations_run_twice_change_nothing() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        open_with(&bus, &user(1), "before").await;
        db.store.migrate().await.unwrap();
        assert_eq!(db.store.head_position().await.unwrap(), 2, "{}", db.name());
        db.cleanup().await;
    }
}

/// MySQL only: a server connection killed while its append transaction waits for the sequencer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_connection_dies_writes_nothing_and_the_next_one_succeeds() {
    use sqlx::Connection;
    let db = TestDb::mysql().await;
    let bus = db.commands().await;
    open_with(&bus, &user(1), "before").await;
    let head = db.store.head_position().await.unwrap();
    let mut holder = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    let mut killer = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("update event_sequencer set next_position = next_position where id = 1")
        .execute(&mut *held)
        .await
        .unwrap();

    let waiting = tokio::spawn({
        let bus = bus.clone();
        async move { open_with_result(&bus, &user(2), "during").await }
    });
    let victim: i64 = loop {
        let row: Option<(i64,)> = sqlx::query_as(
            "select id from information_schema.processlist \
             where info like '% from event_sequencer where id = 1 for update' \
             and db = database() and id <> connection_id() limit 1",
        )
        .fetch_optional(&mut killer)
        .await
        .unwrap();
        match row {
            Some((id,)) if !waiting.is_finished() => break id,
            _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    };
    // The holder's own connection is idle; the waiting one is the appender's.
    sqlx::query(&format!("kill {victim}"))
        .execute(&mut killer)
        .await
        .unwrap();
    let result = waiting.await.unwrap();
    held.rollback().await.unwrap();

    assert!(
        matches!(result, Err(CommandError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(
        db.store.head_position().await.unwrap(),
        head,
        "nothing half-written"
    );
    let after = open_with(&bus, &user(3), "after").await;
    assert_eq!(after.events[0].position, head + 1, "no gap in positions");
    db.cleanup().await;
}

async fn open_with_result(
    bus: &chatd::commands::CommandBus,
    actor: &events::Actor,
    content: &str,
) -> Result<chatd::commands::Committed, CommandError> {
    bus.execute(
        Intent::OpenOrContinue {
            actor: actor.clone(),
            message: Some(text(content)),
        },
        meta(actor),
    )
    .await
}

/// A conversation longer than a snapshot interval is folded, after a restart, from its snapshot
/// and the events after it, to the same state; a snapshot that does not match the log (another
/// hash at its sequence) or cannot be read is passed over and the stream is folded whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_conversation_is_loaded_from_its_snapshot_and_a_bad_snapshot_is_passed_over() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let opened = open_with(&bus, &user(1), "first").await;
        let conversation = opened.conversation_id;
        let mut ids = vec![message_id_of(&opened.events[1])];
        for chunk in 0..12 {
            let sends = (0..100).map(|i| {
                bus.execute(
                    Intent::On(
                        conversation,
                        ConversationCommand::SendMessage {
                            actor: user(1),
                            message: text(&format!("message {chunk}-{i}")),
                        },
                    ),
                    meta(&user(1)),
                )
            });
            for sent in futures::future::join_all(sends).await {
                ids.push(message_id_of(&sent.expect("send").events[0]));
            }
        }
        ids.sort_unstable();
        let snapshot: (i64,) = match &db.store {
            chatd::store::EventStore::MySql(s) => {
                sqlx::query_as("select sequence from conversation_snapshots")
                    .fetch_one(s.pool())
                    .await
            }
            chatd::store::EventStore::Sqlite(s) => {
                sqlx::query_as("select sequence from conversation_snapshots")
                    .fetch_one(s.pool())
                    .await
            }
        }
        .expect("one snapshot");
        assert_eq!(snapshot.0, 1000, "{}", db.name());

        // Each time on a fresh command layer (a restart), the admin reads a hundred messages from
        // before the snapshot: the fold must know they are unread. Then the snapshot is spoiled.
        let spoil = [
            "update conversation_snapshots set hash = \
             '0000000000000000000000000000000000000000000000000000000000000000'",
            "update conversation_snapshots set state = 'not a fold', hash = (select hash \
             from events where stream_id = conversation_snapshots.conversation_id \
             and sequence = conversation_snapshots.sequence)",
        ];
        for round in 0..3 {
            let bus = db.commands().await;
            let chosen = ids[round * 100..(round + 1) * 100].to_vec();
            let read = bus
                .execute(
                    Intent::On(
                        conversation,
                        ConversationCommand::MarkMessagesRead {
                            actor: admin(9),
                            message_ids: chosen.clone(),
                        },
                    ),
                    meta(&admin(9)),
                )
                .await
                .expect("mark read");
            let marked = match read.events.first().map(|e| e.decode()) {
                Some(Ok(ConversationEvent::MessagesRead { message_ids, .. })) => message_ids,
                other => panic!("{}: round {round}: {other:?}", db.name()),
            };
            assert_eq!(marked, chosen, "{}: round {round}", db.name());
            if let Some(statement) = spoil.get(round) {
                macro_rules! run {
                    ($pool:expr) => {
                        sqlx::query(statement).execute($pool).await.expect("spoil")
                    };
                }
                let done = match &db.store {
                    chatd::store::EventStore::MySql(s) => run!(s.pool()).rows_affected(),
                    chatd::store::EventStore::Sqlite(s) => run!(s.pool()).rows_affected(),
                };
                assert_eq!(done, 1, "{}: {statement}", db.name());
            }
        }
        db.cleanup().await;
    }
}

/// A second node or `chatd replay` writes to the same SQLite file from another process. A
/// projection transaction that read before that process committed must still be able to write
/// (SQLite would otherwise refuse it at once with "database is locked", code 517).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_that_read_before_another_process_appended_still_writes() {
    use projections::ProjectionStore;
    for db in TestDb::each().await {
        let other_process =
            chatd::store::EventStore::connect(&chatd::store::StoreOptions::new(&db.url))
                .await
                .expect("second store");
        let other_bus = chatd::commands::CommandBus::start(other_process.clone(), 1000)
            .await
            .expect("second command bus");

        let mut txn = ProjectionStore::begin(&db.store).await.expect("begin");
        txn.fetch_row("select count(*) from events", &[])
            .await
            .expect("read");
        let appended = tokio::spawn(async move {
            let opened = open_with(&other_bus, &user(2), "meanwhile").await;
            opened.conversation_id
        });
        // Long enough for the other append to commit, were it not made to wait.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let wrote = txn
            .execute(
                "insert into projector_state (name, position, holder, lease_expires_at, \
                 last_error, updated_at) values ('probe', 0, null, 0, null, 0)",
                &[],
            )
            .await;
        assert!(wrote.is_ok(), "{}: {wrote:?}", db.name());
        txn.commit().await.expect("commit");
        let opened = appended.await.expect("the other process's append");
        assert!(opened > 0, "{}", db.name());
        other_process.close().await;
        db.cleanup().await;
    }
}
