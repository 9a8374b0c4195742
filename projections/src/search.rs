//! The `search_terms` table: an n-gram index of message text that works the same on MySQL and
//! SQLite (MariaDB's FULLTEXT has no parser for Chinese). Chinese, Japanese and Korean text is
//! indexed as overlapping character bigrams and each character on its own; other letters and
//! digits as lower-cased words of two characters or more. A query is tokenized the same way ([`SearchQuery::parse`]) into
//! whole terms only, each one index lookup; candidates are the messages holding every query term,
//! and runs longer than two CJK characters are verified against the text.
//!
//! One row per (term, conversation, message) with the number of occurrences (`hits`), inserted
//! with multi-row statements, a batch at a time; the rows do not depend on batch boundaries.

use std::collections::BTreeMap;

use async_trait::async_trait;
use events::ConversationEvent;

use crate::batch::BatchInsert;
use crate::{LoggedEvent, ProjectionError, Projector, SqlTxn, SqlValue, Tables};

/// Rows per multi-row insert (4 parameters each).
const INSERT_CHUNK: usize = 500;
const COLUMNS: &str = "term, conversation_id, message_id, hits";
const ROW: &str = "(?, ?, ?, ?)";
/// The messages holding terms, by conversation (2 parameters a row).
const MESSAGE_COLUMNS: &str = "conversation_id, message_id";
const MESSAGE_ROW: &str = "(?, ?)";
const MESSAGE_CHUNK: usize = 500;
/// Words are indexed and matched on their first characters only (the column's width).
pub const MAX_TERM_CHARS: usize = 64;
/// Distinct terms a query may have: each is an index lookup, and a common one (a frequent
/// character, `the`) is thousands of postings.
pub const MAX_QUERY_TERMS: usize = 8;
/// Bigrams a CJK run longer than two characters contributes at most: the run itself is checked
/// against the text, so its bigrams only narrow the candidates, and a few do that.
const MAX_RUN_BIGRAMS: usize = 4;

/// Chinese, Japanese and Korean characters: searched by substring, not by word.
pub fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{1100}'..='\u{11FF}'     // Hangul Jamo
        | '\u{3040}'..='\u{309F}'   // Hiragana
        | '\u{30A0}'..='\u{30FF}'   // Katakana
        | '\u{3130}'..='\u{318F}'   // Hangul compatibility Jamo
        | '\u{31F0}'..='\u{31FF}'   // Katakana phonetic extensions
        | '\u{3400}'..='\u{4DBF}'   // CJK extension A
        | '\u{4E00}'..='\u{9FFF}'   // CJK unified ideographs
        | '\u{AC00}'..='\u{D7AF}'   // Hangul syllables
        | '\u{F900}'..='\u{FAFF}'   // CJK compatibility ideographs
        | '\u{FF66}'..='\u{FF9F}'   // half-width Katakana
        | '\u{20000}'..='\u{3134F}' // CJK extensions B..G
    )
}

/// A piece of text: a run of CJK characters, or a (lower-cased) word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Cjk(Vec<char>),
    Word(String),
}

/// Splits text into CJK runs and lower-cased words; everything else separates.
pub fn segments(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut cjk: Vec<char> = Vec::new();
    let mut word = String::new();
    let flush_word = |word: &mut String, out: &mut Vec<Segment>| {
        if !word.is_empty() {
            out.push(Segment::Word(std::mem::take(word)));
        }
    };
    let flush_cjk = |cjk: &mut Vec<char>, out: &mut Vec<Segment>| {
        if !cjk.is_empty() {
            out.push(Segment::Cjk(std::mem::take(cjk)));
        }
    };
    for c in text.chars() {
        if is_cjk(c) {
            flush_word(&mut word, &mut out);
            cjk.push(c);
        } else if c.is_alphanumeric() {
            flush_cjk(&mut cjk, &mut out);
            word.extend(c.to_lowercase());
        } else {
            flush_word(&mut word, &mut out);
            flush_cjk(&mut cjk, &mut out);
        }
    }
    flush_word(&mut word, &mut out);
    flush_cjk(&mut cjk, &mut out);
    out
}

fn word_term(word: &str) -> String {
    word.chars().take(MAX_TERM_CHARS).collect()
}

/// Whether a word is searched for: a single letter or digit outside CJK (`a`, `i`, `2`) is in a
/// large share of all messages and narrows nothing, so it is neither indexed nor looked up.
fn is_searchable_word(word: &str) -> bool {
    word.chars().nth(1).is_some()
}

/// The index terms of a text and how often each occurs: CJK bigrams, CJK characters, and words
/// of two characters or more.
pub fn index_terms(text: &str) -> BTreeMap<String, i64> {
    let mut terms = BTreeMap::new();
    for segment in segments(text) {
        match segment {
            Segment::Word(word) if !is_searchable_word(&word) => {}
            Segment::Word(word) => *terms.entry(word_term(&word)).or_insert(0) += 1,
            Segment::Cjk(run) => {
                for pair in run.windows(2) {
                    *terms.entry(pair.iter().collect()).or_insert(0) += 1;
                }
                // Each character on its own, so a one-character query is one exact lookup (a
                // prefix range over every bigram a common character starts is thousands of
                // terms).
                for c in &run {
                    *terms.entry(c.to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    terms
}

/// A parsed search query: the index terms every match must hold, and the CJK runs longer than a
/// bigram that must occur as substrings of the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Distinct, sorted; at most [`MAX_QUERY_TERMS`].
    pub terms: Vec<String>,
    pub phrases: Vec<String>,
    /// What the snippet looks for: each segment as the user typed it, lower-cased.
    pub needles: Vec<String>,
}

/// Why a query cannot be searched (the route answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("q has more than {MAX_QUERY_TERMS} distinct terms")]
    TooManyTerms,
    #[error(
        "q has nothing to search for (single letters and digits outside Chinese, Japanese and \
         Korean are ignored)"
    )]
    NothingToSearch,
}

/// Which bigrams of a CJK run are looked up: all of a short run's; of a longer one, bigrams
/// spread from its start to its end (the first and the last among them), at most
/// [`MAX_RUN_BIGRAMS`]. Every match still holds the whole run: the phrase check reads the text.
fn run_bigrams(run: &[char]) -> Vec<String> {
    let pairs: Vec<String> = run.windows(2).map(|pair| pair.iter().collect()).collect();
    if pairs.len() <= MAX_RUN_BIGRAMS {
        return pairs;
    }
    let last = pairs.len() - 1;
    (0..MAX_RUN_BIGRAMS)
        .map(|i| pairs[i * last / (MAX_RUN_BIGRAMS - 1)].clone())
        .collect()
}

impl SearchQuery {
    /// Tokenizes a query as the index tokenizes text (a single letter or digit outside CJK is
    /// ignored). Refused when nothing is left, or with more than [`MAX_QUERY_TERMS`] terms.
    pub fn parse(q: &str) -> Result<SearchQuery, QueryError> {
        let mut terms = std::collections::BTreeSet::new();
        let mut phrases = Vec::new();
        let mut needles = Vec::new();
        for segment in segments(q) {
            match segment {
                Segment::Word(word) => {
                    if !is_searchable_word(&word) {
                        continue;
                    }
                    terms.insert(word_term(&word));
                    needles.push(word);
                }
                Segment::Cjk(run) => {
                    let text: String = run.iter().collect();
                    if run.len() == 1 {
                        terms.insert(text.clone());
                    } else {
                        terms.extend(run_bigrams(&run));
                        if run.len() > 2 {
                            phrases.push(text.clone());
                        }
                    }
                    needles.push(text);
                }
            }
        }
        if terms.is_empty() {
            return Err(QueryError::NothingToSearch);
        }
        if terms.len() > MAX_QUERY_TERMS {
            return Err(QueryError::TooManyTerms);
        }
        phrases.sort();
        phrases.dedup();
        Ok(SearchQuery {
            terms: terms.into_iter().collect(),
            phrases,
            needles,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

pub struct SearchProjector;

#[async_trait]
impl Projector for SearchProjector {
    fn name(&self) -> &'static str {
        "search"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["search_terms", "search_messages"]
    }

    fn pace(&self) -> std::time::Duration {
        crate::FOLLOWER_PACE
    }

    async fn apply(
        &self,
        txn: &mut dyn SqlTxn,
        tables: &Tables,
        events: &[LoggedEvent],
    ) -> Result<(), ProjectionError> {
        let table = tables.name("search_terms");
        let messages = tables.name("search_messages");
        let mut pending = BatchInsert::new(table.clone(), COLUMNS, ROW, INSERT_CHUNK);
        let mut pending_messages = BatchInsert::new(
            messages.clone(),
            MESSAGE_COLUMNS,
            MESSAGE_ROW,
            MESSAGE_CHUNK,
        );
        for event in events {
            if let ConversationEvent::ConversationErased { .. } = event.decode()? {
                pending.flush(txn).await?;
                pending_messages.flush(txn).await?;
                forget(txn, [&table, &messages], event.conversation_id()?).await?;
            }
            // Text and captions of image and file messages alike, and an edit's new text; other
            // events carry no text. A changed message's terms go first: the message may be among
            // those still pending.
            let (message_id, content) = match event.decode()? {
                ConversationEvent::MessageSent {
                    message_id,
                    content,
                    ..
                } => (message_id, content),
                ConversationEvent::MessageEdited {
                    message_id,
                    content,
                    ..
                } => {
                    pending.flush(txn).await?;
                    pending_messages.flush(txn).await?;
                    forget_message(txn, [&table, &messages], event, *message_id).await?;
                    (message_id, content)
                }
                ConversationEvent::MessageDeleted { message_id, .. } => {
                    pending.flush(txn).await?;
                    pending_messages.flush(txn).await?;
                    forget_message(txn, [&table, &messages], event, *message_id).await?;
                    continue;
                }
                _ => continue,
            };
            {
                let conversation_id = event.conversation_id()?;
                let terms = index_terms(content);
                if !terms.is_empty() {
                    let row = [conversation_id.into(), message_id.into()];
                    pending_messages.push(txn, event.position, row).await?;
                }
                for (term, hits) in terms {
                    let row = [
                        term.into(),
                        conversation_id.into(),
                        message_id.into(),
                        SqlValue::Int(hits),
                    ];
                    pending.push(txn, event.position, row).await?;
                }
            }
        }
        pending.flush(txn).await?;
        pending_messages.flush(txn).await
    }
}

/// Removes one message's terms (an edit then indexes its new text).
async fn forget_message(
    txn: &mut dyn SqlTxn,
    [terms, messages]: [&str; 2],
    event: &LoggedEvent,
    message_id: u64,
) -> Result<(), ProjectionError> {
    txn.execute(
        &format!("delete from {terms} where message_id = ?"),
        &[message_id.into()],
    )
    .await?;
    txn.execute(
        &format!("delete from {messages} where conversation_id = ? and message_id = ?"),
        &[event.conversation_id()?.into(), message_id.into()],
    )
    .await?;
    Ok(())
}

/// Removes an erased conversation's terms: its messages' keys from `search_messages`, then
/// their terms by primary key (both lookups, even in a replay's copies).
async fn forget(
    txn: &mut dyn SqlTxn,
    [terms, messages]: [&str; 2],
    conversation_id: u64,
) -> Result<(), ProjectionError> {
    let ids = txn
        .fetch_all(
            &format!("select message_id from {messages} where conversation_id = ?"),
            &[conversation_id.into()],
        )
        .await?;
    for chunk in ids.chunks(MESSAGE_CHUNK) {
        let placeholders = vec!["?"; chunk.len()].join(", ");
        let params: Vec<SqlValue> = chunk
            .iter()
            .filter_map(|row| row.first().cloned())
            .collect();
        txn.execute(
            &format!("delete from {terms} where message_id in ({placeholders})"),
            &params,
        )
        .await?;
    }
    txn.execute(
        &format!("delete from {messages} where conversation_id = ?"),
        &[conversation_id.into()],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_is_indexed_as_bigrams_and_characters() {
        let terms = index_terms("我需要帮助");
        let keys: Vec<&str> = terms.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["助", "帮", "帮助", "我", "我需", "要", "要帮", "需", "需要"]
        );
        assert_eq!(index_terms("好好")["好"], 2);
    }

    #[test]
    fn latin_words_are_lower_cased_and_counted() {
        let terms = index_terms("Refund, REFUND refund! Account-42 a 7");
        assert_eq!(terms.get("refund"), Some(&3));
        assert_eq!(terms.get("account"), Some(&1));
        assert_eq!(terms.get("42"), Some(&1));
        assert_eq!(terms.len(), 3, "single letters and digits are not indexed");
    }

    #[test]
    fn mixed_text_splits_between_scripts() {
        let terms = index_terms("iPhone坏了");
        assert!(terms.contains_key("iphone"));
        assert!(terms.contains_key("坏了"));
    }

    #[test]
    fn a_query_is_tokenized_like_the_text() {
        let q = SearchQuery::parse("我需要帮助 Account").unwrap();
        assert_eq!(q.terms, ["account", "帮助", "我需", "要帮", "需要"]);
        assert_eq!(q.phrases, ["我需要帮助"]);
        let single = SearchQuery::parse("好 ok").unwrap();
        assert_eq!(single.terms, ["ok", "好"]);
    }

    #[test]
    fn a_long_run_looks_up_a_few_bigrams_and_is_checked_whole() {
        let run = "我的订单还没有收到请帮忙查一下";
        let q = SearchQuery::parse(run).unwrap();
        assert_eq!(q.terms.len(), MAX_RUN_BIGRAMS);
        assert!(q.terms.contains(&"我的".to_string()));
        assert!(q.terms.contains(&"一下".to_string()));
        assert_eq!(q.phrases, [run]);
        for term in &q.terms {
            assert!(index_terms(run).contains_key(term), "{term}");
        }
    }

    #[test]
    fn single_latin_letters_and_digits_are_ignored() {
        let q = SearchQuery::parse("a refund for order 7").unwrap();
        assert_eq!(q.terms, ["for", "order", "refund"]);
        assert_eq!(q.needles, ["refund", "for", "order"]);
        assert_eq!(
            SearchQuery::parse("a b 7"),
            Err(QueryError::NothingToSearch)
        );
    }

    #[test]
    fn a_query_with_too_many_terms_is_refused() {
        let q = (0..MAX_QUERY_TERMS + 1)
            .map(|i| format!("w{i} "))
            .collect::<String>();
        assert_eq!(SearchQuery::parse(&q), Err(QueryError::TooManyTerms));
        let chars = "我 你 他 她 的 是 在 有 和";
        assert_eq!(SearchQuery::parse(chars), Err(QueryError::TooManyTerms));
        let q = (0..MAX_QUERY_TERMS)
            .map(|i| format!("w{i} "))
            .collect::<String>();
        assert_eq!(
            SearchQuery::parse(&q).map(|q| q.terms.len()),
            Ok(MAX_QUERY_TERMS)
        );
    }
}
