//! Full-text search over the `search_terms` index (the `search` projector's table) joined with
//! `messages`. Reads only. Every value from the client is a bound parameter; the statement's shape
//! depends only on how many terms the query has (bounded by `MAX_QUERY_TERMS`).

use projections::{QueryTerm, SearchQuery};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::read::{Bind, int};
use super::sql::SqlStore;
use super::{EventStore, StoreError, on_backend};

/// Above this many conversations a user's scope is a sub-query instead of a list of ids.
const MAX_LISTED_CONVERSATIONS: usize = 1000;

/// Which conversations a search may look into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchScope {
    /// Every conversation (admins, auditors).
    All,
    /// One conversation the caller may read.
    Conversation(u64),
    /// The conversations of one user.
    OwnedBy(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    pub message_id: u64,
    pub conversation_id: u64,
    pub sender_role: String,
    pub content: String,
    pub timestamp: i64,
}

/// A LIKE pattern matching `text` anywhere, with `!` as the escape character (the same on both
/// back ends, unlike the backslash).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.chars() {
        if matches!(c, '!' | '%' | '_') {
            pattern.push('!');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The condition selecting one query term's rows, and its parameters.
fn term_condition(term: &QueryTerm) -> (&'static str, Vec<Bind>) {
    match term {
        QueryTerm::Exact(term) => ("t.term = ?", vec![Bind::Text(term.clone())]),
        QueryTerm::Prefix(prefix) => (
            "(t.term >= ? and t.term <= ?)",
            vec![
                Bind::Text(prefix.clone()),
                Bind::Text(format!("{prefix}{}", char::MAX)),
            ],
        ),
    }
}

impl EventStore {
    /// One page (from 1) of the messages matching every term of `query`, most relevant first
    /// (occurrences of the query's terms), then newest; and how many match in all.
    pub async fn search(
        &self,
        scope: &SearchScope,
        query: &SearchQuery,
        page: u32,
        limit: u32,
    ) -> Result<(Vec<SearchHit>, u64), StoreError> {
        on_backend!(self, s => s.search(scope, query, page, limit).await)
    }
}

impl<DB> SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn search(
        &self,
        scope: &SearchScope,
        query: &SearchQuery,
        page: u32,
        limit: u32,
    ) -> Result<(Vec<SearchHit>, u64), StoreError> {
        if query.is_empty() {
            return Ok((Vec::new(), 0));
        }
        // Where the postings may come from.
        let mut scope_binds = Vec::new();
        let scope_sql = match scope {
            SearchScope::All => String::new(),
            SearchScope::Conversation(id) => {
                scope_binds.push(int(*id));
                " and t.conversation_id = ?".to_string()
            }
            SearchScope::OwnedBy(user_id) => {
                let rows = self
                    .fetch(
                        "select id from conversations where user_id = ?",
                        vec![int(*user_id)],
                    )
                    .await?;
                let ids = rows
                    .iter()
                    .map(|row| row.try_get::<i64, _>(0).map_err(StoreError::from_sqlx))
                    .collect::<Result<Vec<i64>, _>>()?;
                if ids.is_empty() {
                    return Ok((Vec::new(), 0));
                }
                if ids.len() <= MAX_LISTED_CONVERSATIONS {
                    let placeholders = vec!["?"; ids.len()].join(", ");
                    scope_binds.extend(ids.into_iter().map(Bind::Int));
                    format!(" and t.conversation_id in ({placeholders})")
                } else {
                    scope_binds.push(int(*user_id));
                    " and t.conversation_id in (select id from conversations where user_id = ?)"
                        .to_string()
                }
            }
        };

        let mut binds = Vec::new();
        let mut any = Vec::new();
        for term in &query.terms {
            let (condition, params) = term_condition(term);
            any.push(condition);
            binds.extend(params);
        }
        binds.extend(scope_binds);
        // A message matches when every term has a row for it.
        let mut every = Vec::new();
        for term in &query.terms {
            let (condition, params) = term_condition(term);
            every.push(format!("max(case when {condition} then 1 else 0 end)"));
            binds.extend(params);
        }
        binds.push(Bind::Int(i64::try_from(query.terms.len()).unwrap_or(0)));
        // Bigrams do not prove that a longer CJK run is contiguous: the text does.
        let mut verify = Vec::new();
        for phrase in &query.phrases {
            verify.push("m.content like ? escape '!'");
            binds.push(Bind::Text(contains_pattern(phrase)));
        }
        let verify_sql = if verify.is_empty() {
            String::new()
        } else {
            format!(" where {}", verify.join(" and "))
        };
        let limit = limit.max(1);
        let offset = u64::from(page.max(1) - 1) * u64::from(limit);
        binds.push(Bind::Int(i64::from(limit)));
        binds.push(int(offset));
        let sql = format!(
            "select m.id, m.conversation_id, m.sender_role, m.content, m.timestamp, \
             count(*) over () as total \
             from (select t.message_id, sum(t.hits) as score from search_terms t \
                   where ({any}){scope_sql} \
                   group by t.message_id \
                   having {every} = ?) s \
             join messages m on m.id = s.message_id{verify_sql} \
             order by s.score desc, m.id desc limit ? offset ?",
            any = any.join(" or "),
            every = every.join(" + "),
        );
        let rows = self.fetch(&sql, binds).await?;
        let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
        let mut total = 0;
        let mut hits = Vec::with_capacity(rows.len());
        for row in &rows {
            let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx);
            let text = |i: usize| row.try_get::<String, _>(i).map_err(StoreError::from_sqlx);
            hits.push(SearchHit {
                message_id: unsigned(int(0)?),
                conversation_id: unsigned(int(1)?),
                sender_role: text(2)?,
                content: text(3)?,
                timestamp: int(4)?,
            });
            total = unsigned(int(5)?);
        }
        if hits.is_empty() && offset > 0 {
            // Past the last page: the window function had no row to report the total on.
            let (_, all) = Box::pin(self.search(scope, query, 1, 1)).await?;
            total = all;
        }
        Ok((hits, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_the_query_are_escaped() {
        assert_eq!(contains_pattern("50%_off!"), "%50!%!_off!!%");
    }
}
