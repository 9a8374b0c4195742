//! The `search_terms` table: an n-gram index of message text that works the same on MySQL and
//! SQLite (MariaDB's FULLTEXT has no parser for Chinese). Chinese, Japanese and Korean text is
//! indexed as overlapping character bigrams (and the last character of each run on its own, so a
//! single character can be found by prefix); other letters and digits as lower-cased words.
//! A query is tokenized the same way ([`SearchQuery::parse`]); candidates are the messages holding
//! every query term, and runs longer than two CJK characters are verified against the text.
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
/// Words are indexed and matched on their first characters only (the column's width).
pub const MAX_TERM_CHARS: usize = 64;
/// Distinct terms a query may have.
pub const MAX_QUERY_TERMS: usize = 16;

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

/// The index terms of a text and how often each occurs: CJK bigrams, the last character of each
/// CJK run, and words.
pub fn index_terms(text: &str) -> BTreeMap<String, i64> {
    let mut terms = BTreeMap::new();
    for segment in segments(text) {
        match segment {
            Segment::Word(word) => *terms.entry(word_term(&word)).or_insert(0) += 1,
            Segment::Cjk(run) => {
                for pair in run.windows(2) {
                    *terms.entry(pair.iter().collect()).or_insert(0) += 1;
                }
                if let Some(last) = run.last() {
                    *terms.entry(last.to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    terms
}

/// How a query term is looked up in `search_terms`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum QueryTerm {
    /// `term = ?`: a word or a CJK bigram.
    Exact(String),
    /// A single CJK character: the terms from it up to it followed by the highest character
    /// (itself, as a run's last character, or any bigram it starts).
    Prefix(String),
}

/// A parsed search query: the index terms every match must hold, and the CJK runs longer than a
/// bigram that must occur as substrings of the text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    pub terms: Vec<QueryTerm>,
    pub phrases: Vec<String>,
    /// What the snippet looks for: each segment as the user typed it, lower-cased.
    pub needles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the query has more than {MAX_QUERY_TERMS} distinct terms")]
pub struct TooManyTerms;

impl SearchQuery {
    /// Tokenizes a query as the index tokenizes text.
    pub fn parse(q: &str) -> Result<SearchQuery, TooManyTerms> {
        let mut terms = std::collections::BTreeSet::new();
        let mut phrases = Vec::new();
        let mut needles = Vec::new();
        for segment in segments(q) {
            match segment {
                Segment::Word(word) => {
                    terms.insert(QueryTerm::Exact(word_term(&word)));
                    needles.push(word);
                }
                Segment::Cjk(run) => {
                    let text: String = run.iter().collect();
                    if run.len() == 1 {
                        terms.insert(QueryTerm::Prefix(text.clone()));
                    } else {
                        for pair in run.windows(2) {
                            terms.insert(QueryTerm::Exact(pair.iter().collect()));
                        }
                        if run.len() > 2 {
                            phrases.push(text.clone());
                        }
                    }
                    needles.push(text);
                }
            }
        }
        if terms.len() > MAX_QUERY_TERMS {
            return Err(TooManyTerms);
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
        &["search_terms"]
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
        let mut pending = BatchInsert::new(table, COLUMNS, ROW, INSERT_CHUNK);
        for event in events {
            // Text and captions of image and file messages alike; other events carry no text.
            if let ConversationEvent::MessageSent {
                message_id,
                content,
                ..
            } = event.decode()?
            {
                let conversation_id = event.conversation_id()?;
                for (term, hits) in index_terms(content) {
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
        pending.flush(txn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_is_indexed_as_bigrams_and_the_run_s_last_character() {
        let terms = index_terms("我需要帮助");
        let keys: Vec<&str> = terms.keys().map(String::as_str).collect();
        assert_eq!(keys, ["助", "帮助", "我需", "要帮", "需要"]);
    }

    #[test]
    fn latin_words_are_lower_cased_and_counted() {
        let terms = index_terms("Refund, REFUND refund! Account-42");
        assert_eq!(terms.get("refund"), Some(&3));
        assert_eq!(terms.get("account"), Some(&1));
        assert_eq!(terms.get("42"), Some(&1));
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
        assert!(q.terms.contains(&QueryTerm::Exact("需要".into())));
        assert!(q.terms.contains(&QueryTerm::Exact("account".into())));
        assert_eq!(q.phrases, ["我需要帮助"]);
        let single = SearchQuery::parse("好 ok").unwrap();
        assert!(single.terms.contains(&QueryTerm::Prefix("好".into())));
    }

    #[test]
    fn a_query_with_too_many_terms_is_refused() {
        let q = (0..40).map(|i| format!("w{i} ")).collect::<String>();
        assert_eq!(SearchQuery::parse(&q), Err(TooManyTerms));
    }
}
