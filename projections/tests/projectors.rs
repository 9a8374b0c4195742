//! Each projector folds the story (`support::story`) into SQLite in memory; the rows it leaves
//! are checked value by value.

mod support;

use std::sync::Arc;

use events::Role;
use projections::{
    AnalyticsProjector, ConversationAsOf, ConversationFacts, ConversationsProjector,
    FilesProjector, MessagesProjector, ProjectionError, Projector, SearchProjector,
};
use support::{FILE_ID, FILE_PATH, FILE_SHA256, MemoryStore, NULL, int, story, txt};

async fn folded(projector: impl Projector + 'static) -> MemoryStore {
    let log = story();
    let store = MemoryStore::new(log.events()).await;
    store.apply(&[Arc::new(projector)], log.events()).await;
    store
}

#[tokio::test]
async fn the_conversations_projector_keeps_status_assignee_counts_last_message_and_feedback() {
    let store = folded(ConversationsProjector).await;

    let rows = store
        .query(
            "select id, user_id, user_identifier, admin_id, status, last_message_id, \
             last_message_preview, last_message_sender_role, last_message_type, last_message_at, \
             message_count, unread_for_user, unread_for_admin, feedback_rating, feedback_comment, \
             feedback_at, closed_at, created_at, updated_at, version from conversations \
             union all select id, user_id, user_identifier, admin_id, status, last_message_id, \
             last_message_preview, last_message_sender_role, last_message_type, last_message_at, \
             message_count, unread_for_user, unread_for_admin, feedback_rating, feedback_comment, \
             feedback_at, closed_at, created_at, updated_at, version from conversations_archive \
             order by id",
        )
        .await;
    // The archived conversation is in the archive only.
    assert_eq!(
        store.query("select id from conversations_archive").await,
        [[int(2)]]
    );

    assert_eq!(
        rows,
        [
            vec![
                int(1),
                int(10),
                txt("user_uuid_10"),
                int(22),
                txt("closed"),
                int(9),
                txt("Refund approved"),
                txt("admin"),
                txt("text"),
                int(7_000_000),
                int(4),
                // The reply, read by the user.
                int(0),
                // Three user messages, two read by alice.
                int(1),
                int(5),
                txt("thanks"),
                int(10_000_000),
                int(9_000_000),
                int(1_000_000),
                int(10_000_000),
                int(11),
            ],
            vec![
                int(2),
                int(11),
                txt("user_uuid_11"),
                NULL,
                txt("archived"),
                int(8),
                // Trimmed for the list; the message keeps its text as sent.
                txt("Fixed now"),
                txt("admin"),
                txt("text"),
                int(6_200_000),
                int(5),
                // The system message counts for the user, as staff messages do.
                int(3),
                int(2),
                NULL,
                NULL,
                NULL,
                // Reopened after its close.
                NULL,
                int(1_500_000),
                int(6_500_000),
                int(9),
            ],
        ]
    );
}

#[tokio::test]
async fn the_messages_projector_writes_one_row_per_message_with_the_read_flags_receipts_set() {
    let store = folded(MessagesProjector::default()).await;

    let rows = store
        .query(
            "select id, conversation_id, user_id, admin_id, sender_role, sender_identifier, \
             message_type, content, file_id, file_url, client_msg_id, metadata, is_read, read_at, \
             timestamp, position from messages union all select id, conversation_id, user_id, \
             admin_id, sender_role, sender_identifier, message_type, content, file_id, file_url, \
             client_msg_id, metadata, is_read, read_at, timestamp, position from messages_archive \
             order by id",
        )
        .await;
    // The archived conversation's messages are in the archive only.
    assert_eq!(
        store
            .query("select distinct conversation_id from messages_archive")
            .await,
        [[int(2)]]
    );
    assert_eq!(
        store
            .query("select count(*) from messages where conversation_id = 2")
            .await,
        [[int(0)]]
    );

    let message = |id, conversation, user_id, admin_id, role, sender, kind, content: &str| {
        vec![
            int(id),
            int(conversation),
            user_id,
            admin_id,
            txt(role),
            txt(sender),
            txt(kind),
            txt(content),
        ]
    };
    let tail = |row: Vec<_>, rest: [_; 8]| row.into_iter().chain(rest).collect::<Vec<_>>();
    let unread = |position, at| [NULL, NULL, NULL, NULL, int(0), NULL, int(at), int(position)];
    assert_eq!(
        rows,
        [
            tail(
                message(
                    1,
                    1,
                    int(10),
                    NULL,
                    "user",
                    "user_uuid_10",
                    "text",
                    "Hello, I need a refund"
                ),
                [
                    NULL,
                    NULL,
                    txt("c-1"),
                    NULL,
                    int(1),
                    int(6_000_000),
                    int(2_000_000),
                    int(3)
                ],
            ),
            tail(
                message(
                    2,
                    2,
                    int(11),
                    NULL,
                    "user",
                    "user_uuid_11",
                    "text",
                    "anyone there? ANYONE?"
                ),
                unread(4, 2_500_000),
            ),
            tail(
                message(
                    3,
                    2,
                    NULL,
                    NULL,
                    "system",
                    "system",
                    "system",
                    "An agent will join shortly"
                ),
                unread(5, 2_600_000),
            ),
            tail(
                message(
                    4,
                    1,
                    int(10),
                    NULL,
                    "user",
                    "user_uuid_10",
                    "text",
                    "我需要帮助"
                ),
                [
                    NULL,
                    NULL,
                    NULL,
                    NULL,
                    int(1),
                    int(6_000_000),
                    int(3_000_000),
                    int(6)
                ],
            ),
            tail(
                message(
                    5,
                    2,
                    NULL,
                    int(21),
                    "admin",
                    "bob",
                    "text",
                    "Hi, how can I help?"
                ),
                unread(7, 3_500_000),
            ),
            tail(
                message(
                    6,
                    2,
                    int(11),
                    NULL,
                    "user",
                    "user_uuid_11",
                    "text",
                    "still broken"
                ),
                unread(11, 4_900_000),
            ),
            tail(
                message(
                    7,
                    1,
                    int(10),
                    NULL,
                    "user",
                    "user_uuid_10",
                    "image",
                    "receipt"
                ),
                [
                    txt(FILE_ID),
                    txt(FILE_PATH),
                    NULL,
                    NULL,
                    int(0),
                    NULL,
                    int(5_500_000),
                    int(13)
                ],
            ),
            tail(
                message(8, 2, NULL, int(21), "admin", "bob", "text", "  Fixed now  "),
                unread(15, 6_200_000),
            ),
            tail(
                message(
                    9,
                    1,
                    NULL,
                    int(20),
                    "admin",
                    "alice",
                    "text",
                    "Refund approved"
                ),
                [
                    NULL,
                    NULL,
                    txt("a-9"),
                    NULL,
                    int(1),
                    int(8_000_000),
                    int(7_000_000),
                    int(17)
                ],
            ),
        ]
    );
}

#[tokio::test]
async fn the_messages_projector_records_what_an_image_message_says_of_its_file() {
    let store = folded(MessagesProjector::default()).await;

    let with_file = store
        .query(
            "select id, file_name, file_size, mime_type, width, height from messages \
             where file_id is not null",
        )
        .await;
    assert_eq!(
        with_file,
        [vec![
            int(7),
            txt("receipt.png"),
            int(2048),
            txt("image/png"),
            int(640),
            int(480)
        ]]
    );
    let text_rows_with_file_fields = store
        .query(
            "select count(*) from messages where file_id is null and (file_name is not null \
             or file_size is not null or mime_type is not null or width is not null \
             or height is not null)",
        )
        .await;
    assert_eq!(text_rows_with_file_fields, [vec![int(0)]]);
}

#[tokio::test]
async fn the_files_projector_records_each_upload_with_its_conversation_and_uploader() {
    let store = folded(FilesProjector).await;

    let rows = store
        .query(
            "select file_id, conversation_id, uploader_role, uploader_id, kind, original_name, \
             size, mime_type, sha256, path, width, height, uploaded_at, position from files",
        )
        .await;

    assert_eq!(
        rows,
        [vec![
            txt(FILE_ID),
            int(1),
            txt("user"),
            int(10),
            txt("image"),
            txt("receipt.png"),
            int(2048),
            txt("image/png"),
            txt(FILE_SHA256),
            txt(FILE_PATH),
            int(640),
            int(480),
            int(5_000_000),
            int(12),
        ]]
    );
}

#[tokio::test]
async fn the_search_projector_indexes_words_and_chinese_bigrams_with_their_hits() {
    let store = folded(SearchProjector).await;

    let refund = store
        .query("select conversation_id, message_id, hits from search_terms where term = 'refund'")
        .await;
    let anyone = store
        .query("select conversation_id, message_id, hits from search_terms where term = 'anyone'")
        .await;
    let caption = store
        .query("select conversation_id, message_id, hits from search_terms where term = 'receipt'")
        .await;
    let chinese = store
        .query("select term, hits from search_terms where message_id = 4")
        .await;
    let total = store.query("select count(*) from search_terms").await;

    assert_eq!(refund, [[int(1), int(1), int(1)], [int(1), int(9), int(1)]]);
    assert_eq!(anyone, [[int(2), int(2), int(2)]]);
    assert_eq!(caption, [[int(1), int(7), int(1)]]);
    assert_eq!(
        chinese,
        [
            [txt("助"), int(1)],
            [txt("帮"), int(1)],
            [txt("帮助"), int(1)],
            [txt("我"), int(1)],
            [txt("我需"), int(1)],
            [txt("要"), int(1)],
            [txt("要帮"), int(1)],
            [txt("需"), int(1)],
            [txt("需要"), int(1)],
        ]
    );
    // 3 + 2 + 5 + 9 + 4 + 2 + 1 + 2 + 2 distinct terms in messages 1 to 9 (single Latin
    // letters are not indexed; each Chinese character is).
    assert_eq!(total, [[int(30)]]);
}

#[tokio::test]
async fn the_analytics_projector_records_facts_and_gives_closes_and_ratings_to_the_assignee() {
    let store = folded(AnalyticsProjector).await;

    let facts = store.rows("analytics_facts").await;
    let states = store.rows("analytics_conversations").await;

    // (position, kind, conversation, recorded_at, admin, value); kinds: 1 opened, 2 closed,
    // 3 user message, 4 admin message, 5 reply, 6 first response, 7 feedback.
    let fact = |position, kind, conversation, at, admin, value| {
        vec![
            int(position),
            int(kind),
            int(conversation),
            int(at),
            admin,
            int(value),
        ]
    };
    assert_eq!(
        facts,
        [
            fact(1, 1, 1, 1_000_000, NULL, 0),
            fact(2, 1, 2, 1_500_000, NULL, 0),
            fact(3, 3, 1, 2_000_000, NULL, 0),
            fact(4, 3, 2, 2_500_000, NULL, 0),
            fact(6, 3, 1, 3_000_000, NULL, 0),
            fact(7, 4, 2, 3_500_000, int(21), 0),
            fact(7, 5, 2, 3_500_000, int(21), 1_000_000),
            fact(7, 6, 2, 3_500_000, int(21), 1_000_000),
            // Nobody assigned: the close belongs to the last admin who replied.
            fact(9, 2, 2, 4_500_000, int(21), 0),
            fact(11, 3, 2, 4_900_000, NULL, 0),
            fact(13, 3, 1, 5_500_000, NULL, 0),
            fact(15, 4, 2, 6_200_000, int(21), 0),
            // A second reply, but not a first response.
            fact(15, 5, 2, 6_200_000, int(21), 1_300_000),
            fact(17, 4, 1, 7_000_000, int(20), 0),
            // The user has waited since their first unanswered message.
            fact(17, 5, 1, 7_000_000, int(20), 5_000_000),
            fact(17, 6, 1, 7_000_000, int(20), 5_000_000),
            // Assigned to 22, though 20 replied.
            fact(19, 2, 1, 9_000_000, int(22), 0),
            fact(20, 7, 1, 10_000_000, int(22), 5),
        ]
    );
    // (conversation, waiting_since, answered, assignee, last_admin)
    assert_eq!(
        states,
        [
            [int(1), NULL, int(1), int(22), int(20)],
            [int(2), NULL, int(1), NULL, int(21)],
        ]
    );
}

#[tokio::test]
async fn the_analytics_table_holds_exactly_the_facts_the_in_memory_fold_makes() {
    let log = story();
    let store = folded(AnalyticsProjector).await;

    let mut states = std::collections::BTreeMap::<u64, ConversationFacts>::new();
    let mut facts = Vec::new();
    for event in log.events() {
        let id = event.conversation_id().unwrap();
        states
            .entry(id)
            .or_default()
            .fold(event, &mut facts)
            .unwrap();
    }
    let mut folded: Vec<_> = facts
        .iter()
        .map(|f| {
            vec![
                int(f.position as i64),
                int(f.kind.code()),
                int(f.conversation_id as i64),
                int(f.at),
                f.admin_id.map_or(NULL, |a| int(a as i64)),
                int(f.value),
            ]
        })
        .collect();
    folded.sort_by_key(|row| (row[0].as_i64(), row[1].as_i64()));

    assert_eq!(store.rows("analytics_facts").await, folded);
}

#[tokio::test]
async fn applying_messages_already_in_the_table_fails_naming_the_positions_of_the_insert() {
    let log = story();
    let messages = MemoryStore::new(log.events()).await;
    let search = MemoryStore::new(log.events()).await;
    messages
        .apply(&[Arc::new(MessagesProjector::default())], log.events())
        .await;
    search
        .apply(&[Arc::new(SearchProjector)], log.events())
        .await;

    let again = messages
        .try_apply(&[Arc::new(MessagesProjector::default())], log.events())
        .await;
    let search_again = search
        .try_apply(&[Arc::new(SearchProjector)], log.events())
        .await;

    // The first insert is the run of messages the read receipt at position 14 flushes.
    let Err(ProjectionError::Apply { position, reason }) = again else {
        panic!("expected a refusal, got {again:?}");
    };
    assert_eq!(position, 3);
    assert!(
        reason.starts_with("a message of positions 3..=13 is already in messages: "),
        "{reason}"
    );
    let Err(ProjectionError::Apply { position, reason }) = search_again else {
        panic!("expected a refusal, got {search_again:?}");
    };
    assert_eq!(position, 3);
    assert!(
        reason.starts_with("a message of positions 3..=17 is already in search_terms: "),
        "{reason}"
    );
    // Nothing of the refused batches stayed.
    assert_eq!(
        messages
            .query(
                "select (select count(*) from messages) + (select count(*) from messages_archive)"
            )
            .await,
        [[int(9)]]
    );
    assert_eq!(
        search.query("select count(*) from search_terms").await,
        [[int(30)]]
    );
}

#[tokio::test]
async fn the_messages_and_search_projectors_insert_each_run_with_one_statement() {
    let log = story();
    let store = MemoryStore::new(log.events()).await;

    store
        .apply(
            &[
                Arc::new(MessagesProjector::default()),
                Arc::new(SearchProjector),
            ],
            log.events(),
        )
        .await;

    // Messages 1 to 7 go out before the read receipt at position 14 (which marks two of them),
    // 8 and 9 before the one at 18: conversation 1's into `messages`, those of conversation 2,
    // archived later in the batch, straight into the archive (the archival's move of earlier
    // batches' rows finds none); search terms have no receipts to wait for.
    assert_eq!(store.inserts_into("messages"), [3, 1]);
    assert_eq!(store.inserts_into("messages_archive"), [4, 1, 1]);
    assert_eq!(store.inserts_into("search_terms"), [30]);
}

#[tokio::test]
async fn the_audit_fold_shows_a_conversation_as_it_stood_and_at_the_end_agrees_with_the_tables() {
    let log = story();
    let store = MemoryStore::new(log.events()).await;
    store
        .apply(
            &[
                Arc::new(ConversationsProjector),
                Arc::new(MessagesProjector::default()),
            ],
            log.events(),
        )
        .await;
    let first: Vec<_> = log.events().iter().filter(|e| e.stream_id == "1").collect();

    let as_of = |until: i64| {
        let mut state = ConversationAsOf::default();
        for event in first.iter().filter(|e| e.recorded_at_micros <= until) {
            state.apply(
                event.sequence,
                event.recorded_at_micros,
                event.decode().unwrap().clone(),
            );
        }
        state
    };
    let before_reading = as_of(5_999_999);
    let at_the_end = as_of(i64::MAX);

    assert_eq!(before_reading.status, Some("active"));
    assert_eq!(before_reading.admin_id, Some(22));
    assert_eq!(before_reading.sequence, 6);
    assert_eq!(before_reading.feedback, None);
    assert!(before_reading.messages.values().all(|m| !m.is_read));
    assert_eq!(
        before_reading.messages.keys().copied().collect::<Vec<_>>(),
        [1, 4, 7]
    );
    assert_eq!(
        before_reading.user.as_ref().map(|u| (u.id, u.role)),
        Some((10, Role::User))
    );

    let row = store
        .query("select status, admin_id, feedback_rating, feedback_comment, version from conversations where id = 1")
        .await;
    assert_eq!(
        row,
        [[
            txt(at_the_end.status.unwrap()),
            int(at_the_end.admin_id.unwrap() as i64),
            int(i64::from(at_the_end.feedback.as_ref().unwrap().0)),
            txt(at_the_end.feedback.as_ref().unwrap().1.as_deref().unwrap()),
            int(at_the_end.sequence as i64),
        ]]
    );
    let read_flags = store
        .query("select id, is_read from messages where conversation_id = 1")
        .await;
    let folded_flags: Vec<_> = at_the_end
        .messages
        .values()
        .map(|m| [int(m.id as i64), int(i64::from(m.is_read))])
        .collect();
    assert_eq!(read_flags, folded_flags);
    assert_eq!(
        folded_flags,
        [
            [int(1), int(1)],
            [int(4), int(1)],
            [int(7), int(0)],
            [int(9), int(1)]
        ]
    );
}
