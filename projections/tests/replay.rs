//! Every projector leaves the same rows whatever the batch boundaries are, and `replay` rebuilds
//! exactly what folding the log leaves.

mod support;

use std::collections::BTreeSet;

use projections::{LoggedEvent, SqlValue, all_projectors, replay};
use proptest::prelude::*;
use support::{MemoryStore, busy_log, busy_log_archived_and_erased, int, projected_tables, txt};

type Dump = Vec<(&'static str, Vec<Vec<SqlValue>>)>;

/// Folds `events` with every projector, one transaction per batch.
async fn fold_in_batches<'a>(
    events: &[LoggedEvent],
    batches: impl Iterator<Item = &'a [LoggedEvent]>,
) -> Dump {
    let store = MemoryStore::new(events).await;
    let projectors = all_projectors();
    for batch in batches {
        store.apply(&projectors, batch).await;
    }
    store.tables().await
}

async fn fold_in_one_batch(events: &[LoggedEvent]) -> Dump {
    fold_in_batches(events, std::iter::once(events)).await
}

/// The batches that cutting `events` before each of `cuts` (indexes) makes.
fn split_at<'a>(events: &'a [LoggedEvent], cuts: &BTreeSet<usize>) -> Vec<&'a [LoggedEvent]> {
    let mut batches = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&events.len())) {
        if cut > start {
            batches.push(&events[start..cut]);
            start = cut;
        }
    }
    batches
}

fn row_count(dump: &Dump, table: &str) -> usize {
    dump.iter()
        .find(|(name, _)| *name == table)
        .map_or(0, |(_, rows)| rows.len())
}

#[tokio::test]
async fn one_batch_inserts_at_most_400_messages_and_500_search_terms_a_statement() {
    let log = busy_log();
    let store = MemoryStore::new(log.events()).await;

    store.apply(&all_projectors(), log.events()).await;

    let tables = store.tables().await;
    // 9 messages in the story, 40 in each of 12 conversations, 450 in the last one; the
    // story's archived conversation and its 5 messages are in the archive.
    assert_eq!(row_count(&tables, "messages"), 9 + 12 * 40 + 450 - 5);
    assert_eq!(row_count(&tables, "messages_archive"), 5);
    assert_eq!(row_count(&tables, "conversations"), 14);
    assert_eq!(row_count(&tables, "conversations_archive"), 1);
    assert_eq!(row_count(&tables, "files"), 1);
    assert_eq!(row_count(&tables, "analytics_conversations"), 15);
    assert!(row_count(&tables, "analytics_facts") > 1_000);
    assert_eq!(
        tables.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        projected_tables()
    );
    // Every read receipt flushes the messages before it; the 450 unanswered ones (and the one
    // left from the conversation before) go out as 400, then the rest.
    let messages = store.inserts_into("messages");
    assert!(messages.iter().all(|&rows| rows <= 400), "{messages:?}");
    assert_eq!(messages[messages.len() - 2..], [400, 51]);
    assert_eq!(
        messages.iter().sum::<usize>(),
        row_count(&tables, "messages")
    );
    let terms = store.inserts_into("search_terms");
    let (last, full) = terms.split_last().unwrap();
    assert!(
        full.len() > 2 && full.iter().all(|&rows| rows == 500),
        "{terms:?}"
    );
    assert!((1..=500).contains(last));
    assert_eq!(
        terms.iter().sum::<usize>(),
        row_count(&tables, "search_terms")
    );
}

#[tokio::test]
async fn folding_event_by_event_leaves_the_same_tables_as_one_batch() {
    let log = busy_log();

    let whole = fold_in_one_batch(log.events()).await;
    let one_by_one = fold_in_batches(log.events(), log.events().chunks(1)).await;

    assert_eq!(one_by_one, whole);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn folding_in_any_batches_leaves_the_same_tables_as_one_batch(
        cuts in proptest::collection::btree_set(1..busy_log().events().len(), 0..40)
    ) {
        let log = busy_log();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

        let (whole, split) = runtime.block_on(async {
            let whole = fold_in_one_batch(log.events()).await;
            let batches = split_at(log.events(), &cuts);
            let split = fold_in_batches(log.events(), batches.into_iter()).await;
            (whole, split)
        });

        prop_assert_eq!(split, whole);
    }
}

#[tokio::test]
async fn replay_rebuilds_half_folded_tables_into_those_of_the_whole_log_and_moves_the_checkpoints()
{
    let log = busy_log_archived_and_erased();
    let events = log.events();
    let head = events.len() as u64;
    let expected = fold_in_one_batch(events).await;
    // The archived conversations (the story's and one of these) are in the archive.
    let (_, archived) = expected
        .iter()
        .find(|(table, _)| *table == "messages_archive")
        .unwrap();
    assert_eq!(archived.len(), 5 + 40);
    let store = MemoryStore::new(events).await;
    store
        .apply(&all_projectors(), &events[..events.len() / 2])
        .await;
    let indexes = "select name from sqlite_master where type = 'index' and sql is not null";
    let indexes_before = store.query(indexes).await;
    let mut reports = Vec::new();

    let position = replay(&store, &all_projectors(), 97, |p| reports.push(p))
        .await
        .unwrap();

    assert_eq!(position, head);
    assert_eq!(store.tables().await, expected);
    // The swapped-in tables got the live tables' indexes back, and no rebuild copy is left.
    assert_eq!(store.query(indexes).await, indexes_before);
    assert_eq!(
        store
            .query("select name from sqlite_master where name like '%rebuild%'")
            .await,
        Vec::<Vec<SqlValue>>::new()
    );
    let last = reports.last().unwrap();
    assert_eq!((last.applied, last.position, last.head), (head, head, head));
    let checkpoints = store
        .query("select name, position, holder from projector_state")
        .await;
    let mut names: Vec<_> = all_projectors().iter().map(|p| p.name()).collect();
    names.sort();
    assert_eq!(
        checkpoints,
        names
            .into_iter()
            .map(|name| vec![txt(name), int(head as i64), SqlValue::Null])
            .collect::<Vec<_>>()
    );
}
