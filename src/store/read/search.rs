//! Full-text search over the `search_terms` index (the `search` projector's table) joined with
//! `messages`. Reads only. Every value from the client is a bound parameter; the statement's shape
//! depends only on how many terms the query has (bounded by `MAX_QUERY_TERMS`).

use projections::SearchQuery;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Bind, int};
use crate::store::{EventStore, SqlStore, StoreError, on_backend};

/// Above this many conversations a user's scope is a sub-query instead of a list of ids.
const MAX_LISTED_CONVERSATIONS: usize = 1000;
/// A search over every conversation ranks the newest this many matches: a common word has
/// hundreds of thousands, and reading them all to rank them costs seconds. Below this many the
/// result is exact.
pub const RECENT_MATCHES: u32 = 1000;
/// Postings counted per term, at most, to find a query's rarest term.
const RARITY_PROBE: i64 = 5000;
/// How many of the rarest term's newest postings the first try of a search over every
/// conversation looks at.
const FIRST_POSTINGS: i64 = 2000;
/// A term with this many times the rarest term's postings in a search's range is looked up per
/// candidate instead of read whole: a lookup costs about this many sequential index entries.
const LOOKUP_RATIO: i64 = 16;

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

/// What the back ends spell differently in a search.
struct Hints {
    /// Names the `(term, message_id)` index on `search_terms`.
    recent_index: &'static str,
    /// Names the `(term, conversation_id, message_id, hits)` index: a scoped search reads each
    /// term's postings in the caller's conversations only, never a whole term.
    scope_index: &'static str,
    /// A join whose left side stays the outer loop: otherwise a planner may walk `messages`
    /// newest first to satisfy the order, reading every message to find a few.
    ordered_join: &'static str,
}

const MYSQL: Hints = Hints {
    recent_index: "force index (search_terms_recent)",
    scope_index: "force index (search_terms_term)",
    ordered_join: "straight_join",
};

const SQLITE: Hints = Hints {
    recent_index: "indexed by search_terms_recent",
    scope_index: "indexed by search_terms_term",
    ordered_join: "cross join",
};

impl SqlStore<sqlx::MySql> {
    fn search_hints(&self) -> &'static Hints {
        &MYSQL
    }
}

impl SqlStore<sqlx::Sqlite> {
    fn search_hints(&self) -> &'static Hints {
        &SQLITE
    }
}

/// One page of matches, and how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    pub total: u64,
    /// False when the search stopped at [`RECENT_MATCHES`]: `total` is then a lower bound.
    pub total_is_exact: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    pub message_id: u64,
    pub conversation_id: u64,
    pub sender_role: String,
    pub content: String,
    pub timestamp: i64,
    pub message_type: String,
    pub file_id: Option<String>,
    /// The file's stored path, as in `messages`.
    pub file_path: Option<String>,
    pub attachment: Option<events::AttachedFile>,
}

/// What a hit reads of its message, in [`hit_of`]'s order.
const HIT_COLUMNS: &str = "m.id, m.conversation_id, m.sender_role, m.content, m.timestamp, \
     m.message_type, m.file_id, m.file_url, m.file_name, m.file_size, m.mime_type, m.width, m.height";
const HIT_COLUMN_COUNT: usize = 13;

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

impl EventStore {
    /// One page (from 1) of the messages matching every term of `query`, most relevant first
    /// (occurrences of the query's terms), then newest; and how many match in all. Over every
    /// conversation, only the newest [`RECENT_MATCHES`] matches are ranked.
    pub async fn search(
        &self,
        scope: &SearchScope,
        query: &SearchQuery,
        page: u32,
        limit: u32,
    ) -> Result<SearchResults, StoreError> {
        if *scope == SearchScope::All {
            let recent = on_backend!(self, s => {
                s.search_recent(query, page, limit, s.search_hints()).await?
            });
            if let Some(results) = recent {
                return Ok(results);
            }
        }
        on_backend!(self, s => s.search(scope, query, page, limit, s.search_hints()).await)
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
        hints: &Hints,
    ) -> Result<SearchResults, StoreError> {
        if query.is_empty() {
            return Ok(SearchResults::empty());
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
                    return Ok(SearchResults::empty());
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
        // The scope is the index's second column, after the term: each term's postings are read
        // for the caller's conversations only.
        let index_hint = match scope {
            SearchScope::All => "",
            _ => hints.scope_index,
        };
        let (matches, mut binds) = matching_messages(query, index_hint, &scope_sql, scope_binds);
        let (verify_sql, verify_binds) = phrase_check(query);
        binds.extend(verify_binds);
        let limit = limit.max(1);
        let offset = u64::from(page.max(1) - 1) * u64::from(limit);
        binds.push(Bind::Int(i64::from(limit)));
        binds.push(int(offset));
        let sql = format!(
            "select {HIT_COLUMNS}, count(*) over () as total \
             from ({matches}) s \
             join messages m on m.id = s.message_id{verify_sql} \
             order by s.score desc, m.id desc limit ? offset ?"
        );
        let rows = self.fetch(&sql, binds).await?;
        let mut total = 0;
        let mut hits = Vec::with_capacity(rows.len());
        for row in &rows {
            hits.push(hit_of(row)?);
            total = u64::try_from(
                row.try_get::<i64, _>(HIT_COLUMN_COUNT)
                    .map_err(StoreError::from_sqlx)?,
            )
            .unwrap_or(0);
        }
        if hits.is_empty() && offset > 0 {
            // Past the last page: the window function had no row to report the total on.
            total = Box::pin(self.search(scope, query, 1, 1, hints))
                .await?
                .total;
        }
        Ok(SearchResults {
            hits,
            total,
            total_is_exact: true,
        })
    }

    /// A search over every conversation that stops at the newest [`RECENT_MATCHES`] matches
    /// and ranks those. Every match holds the query's rarest term, so the matches among that
    /// term's newest N postings are the newest matches of all: N grows until they are enough
    /// or cover every posting. Each try reads only index entries from a message id on, in
    /// index order. None when the query has no term.
    async fn search_recent(
        &self,
        query: &SearchQuery,
        page: u32,
        limit: u32,
        hints: &Hints,
    ) -> Result<Option<SearchResults>, StoreError> {
        let Some((rarest, rarest_postings)) = self.rarest_term(query).await? else {
            return Ok(None);
        };
        let wanted = RECENT_MATCHES as usize;
        let mut postings = FIRST_POSTINGS;
        let mut matches = loop {
            let rows = self
                .fetch(
                    &format!(
                        "select message_id from search_terms {} \
                         where term = ? order by message_id desc limit 1 offset ?",
                        hints.recent_index
                    ),
                    vec![Bind::Text(rarest.clone()), Bind::Int(postings - 1)],
                )
                .await?;
            let from = match rows.first() {
                Some(row) => row.try_get::<i64, _>(0).map_err(StoreError::from_sqlx)?,
                None => 0,
            };
            // A term far more common than the rarest one in the range costs less looked up per
            // candidate than read whole.
            let mut looked_up = Vec::new();
            for term in &query.terms {
                if *term != rarest
                    && self
                        .is_common_from(
                            term,
                            from,
                            postings.min(rarest_postings.max(1)) * LOOKUP_RATIO,
                            hints,
                        )
                        .await?
                {
                    looked_up.push(term.clone());
                }
            }
            let found = self.matches_from(query, hints, from, &looked_up).await?;
            if found.len() >= wanted || from == 0 {
                break found;
            }
            // Widen toward the share of matches seen so far, at least fourfold.
            let grow = (wanted * 5 / 4 / found.len().max(1)).clamp(4, 64);
            postings = postings.saturating_mul(i64::try_from(grow).unwrap_or(64));
        };
        let total = matches.len() as u64;
        matches.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        let limit = limit.max(1) as usize;
        let offset = (page.max(1) as usize - 1).saturating_mul(limit);
        let page_ids: Vec<i64> = matches
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(id, _)| *id)
            .collect();
        let mut hits = Vec::with_capacity(page_ids.len());
        if !page_ids.is_empty() {
            let placeholders = vec!["?"; page_ids.len()].join(", ");
            let rows = self
                .fetch(
                    &format!("select {HIT_COLUMNS} from messages m where m.id in ({placeholders})"),
                    page_ids.iter().copied().map(Bind::Int).collect(),
                )
                .await?;
            for row in &rows {
                hits.push(hit_of(row)?);
            }
            let rank = |hit: &SearchHit| {
                page_ids
                    .iter()
                    .position(|id| u64::try_from(*id).ok() == Some(hit.message_id))
            };
            hits.sort_by_key(rank);
        }
        Ok(Some(SearchResults {
            hits,
            total,
            total_is_exact: total < u64::from(RECENT_MATCHES),
        }))
    }

    /// Whether `term` has at least `postings` postings from message id `from` on (reads at most
    /// that many index entries).
    async fn is_common_from(
        &self,
        term: &str,
        from: i64,
        postings: i64,
        hints: &Hints,
    ) -> Result<bool, StoreError> {
        let rows = self
            .fetch(
                &format!(
                    "select count(*) from (select 1 from search_terms {} \
                     where term = ? and message_id >= ? limit ?) probe",
                    hints.recent_index
                ),
                vec![
                    Bind::Text(term.to_string()),
                    Bind::Int(from),
                    Bind::Int(postings),
                ],
            )
            .await?;
        let counted = match rows.first() {
            Some(row) => row.try_get::<i64, _>(0).map_err(StoreError::from_sqlx)?,
            None => 0,
        };
        Ok(counted >= postings)
    }

    /// The newest [`RECENT_MATCHES`] messages from message id `from` on that match `query`,
    /// as (message id, score). The terms in `looked_up` are not read in the range but looked up
    /// for each message the others matched.
    async fn matches_from(
        &self,
        query: &SearchQuery,
        hints: &Hints,
        from: i64,
        looked_up: &[String],
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let read_whole = SearchQuery {
            terms: query
                .terms
                .iter()
                .filter(|term| !looked_up.contains(term))
                .cloned()
                .collect(),
            ..query.clone()
        };
        let (matches, mut binds) = matching_messages(
            &read_whole,
            hints.recent_index,
            " and t.message_id >= ?",
            vec![Bind::Int(from)],
        );
        // Joined in this order, the candidates outermost: each looked-up term is one index
        // lookup per candidate, and the text is read only for the messages that hold every term.
        let mut joins = String::new();
        let mut score = String::from("c.score");
        for (n, term) in looked_up.iter().enumerate() {
            joins.push_str(&format!(
                " {} search_terms p{n} on p{n}.message_id = c.message_id and p{n}.term = ?",
                hints.ordered_join
            ));
            binds.push(Bind::Text(term.clone()));
            score.push_str(&format!(" + p{n}.hits"));
        }
        let (conditions, verify_binds) = phrase_conditions(query);
        let mut verify_sql = String::new();
        if !conditions.is_empty() {
            verify_sql = format!(
                " {} messages m on m.id = c.message_id where {}",
                hints.ordered_join,
                conditions.join(" and ")
            );
        }
        binds.extend(verify_binds);
        binds.push(Bind::Int(i64::from(RECENT_MATCHES)));
        let rows = self
            .fetch(
                &format!(
                    "select c.message_id, cast({score} as signed) from ({matches}) c\
                     {joins}{verify_sql} order by c.message_id desc limit ?"
                ),
                binds,
            )
            .await?;
        rows.iter()
            .map(|row| {
                let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx);
                Ok((int(0)?, int(1)?))
            })
            .collect()
    }

    /// The query's whole term with the fewest postings and how many it has (counted up to
    /// [`RARITY_PROBE`]), or None when it has none.
    async fn rarest_term(&self, query: &SearchQuery) -> Result<Option<(String, i64)>, StoreError> {
        if query.terms.len() < 2 {
            return Ok(query.terms.first().map(|term| (term.clone(), RARITY_PROBE)));
        }
        let mut rarest = None;
        for term in &query.terms {
            let rows = self
                .fetch(
                    "select count(*) from (select 1 from search_terms where term = ? limit ?) probe",
                    vec![Bind::Text(term.clone()), Bind::Int(RARITY_PROBE)],
                )
                .await?;
            let postings = match rows.first() {
                Some(row) => row.try_get::<i64, _>(0).map_err(StoreError::from_sqlx)?,
                None => 0,
            };
            if rarest.as_ref().is_none_or(|(fewest, _)| postings < *fewest) {
                rarest = Some((postings, term.clone()));
            }
        }
        Ok(rarest.map(|(postings, term)| (term, postings)))
    }
}

/// The sub-query of the messages holding every term of `query` (aliased `t`, the index named by
/// `index_hint` when not empty), with their score (occurrences of the terms), restricted by
/// `scope_sql` and its parameters; and all its parameters.
fn matching_messages(
    query: &SearchQuery,
    index_hint: &str,
    scope_sql: &str,
    scope_binds: Vec<Bind>,
) -> (String, Vec<Bind>) {
    let mut binds: Vec<Bind> = query.terms.iter().cloned().map(Bind::Text).collect();
    binds.extend(scope_binds);
    binds.push(Bind::Int(i64::try_from(query.terms.len()).unwrap_or(0)));
    // A message matches when every term has a row for it: one row per (message, term), and
    // the terms are distinct.
    let sql = format!(
        "select t.message_id, sum(t.hits) as score from search_terms t {index_hint} \
         where t.term in ({terms}){scope_sql} \
         group by t.message_id \
         having count(*) = ?",
        terms = vec!["?"; query.terms.len()].join(", "),
    );
    (sql, binds)
}

/// The condition on `messages m` that the query's longer CJK runs occur in the text (bigrams do
/// not prove that a run is contiguous: the text does), as " where ..." or nothing.
fn phrase_check(query: &SearchQuery) -> (String, Vec<Bind>) {
    let (conditions, binds) = phrase_conditions(query);
    if conditions.is_empty() {
        return (String::new(), binds);
    }
    (format!(" where {}", conditions.join(" and ")), binds)
}

/// The conditions on `messages m` of [`phrase_check`], one per phrase, and their parameters.
fn phrase_conditions(query: &SearchQuery) -> (Vec<String>, Vec<Bind>) {
    let conditions = vec!["m.content like ? escape '!'".to_string(); query.phrases.len()];
    let binds = query
        .phrases
        .iter()
        .map(|phrase| Bind::Text(contains_pattern(phrase)))
        .collect();
    (conditions, binds)
}

impl SearchResults {
    fn empty() -> Self {
        SearchResults {
            hits: Vec::new(),
            total: 0,
            total_is_exact: true,
        }
    }
}

/// A hit from a row whose first columns are [`HIT_COLUMNS`].
fn hit_of<R: Row>(row: &R) -> Result<SearchHit, StoreError>
where
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    usize: ColumnIndex<R>,
{
    let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx);
    let text = |i: usize| row.try_get::<String, _>(i).map_err(StoreError::from_sqlx);
    let opt_text = |i: usize| {
        row.try_get::<Option<String>, _>(i)
            .map_err(StoreError::from_sqlx)
    };
    Ok(SearchHit {
        message_id: u64::try_from(int(0)?).unwrap_or(0),
        conversation_id: u64::try_from(int(1)?).unwrap_or(0),
        sender_role: text(2)?,
        content: text(3)?,
        timestamp: int(4)?,
        message_type: text(5)?,
        file_id: opt_text(6)?,
        file_path: opt_text(7)?,
        attachment: super::attachment_from_row(row, 8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_the_query_are_escaped() {
        assert_eq!(contains_pattern("50%_off!"), "%50!%!_off!!%");
    }
}
