//! Full-text search over the `search_terms` index (the `search` projector's table) joined with
//! `messages`. Reads only. Every value from the client is a bound parameter; the statement's shape
//! depends only on how many terms the query has (bounded by `MAX_QUERY_TERMS`).

use projections::SearchQuery;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{ARCHIVED_CONVERSATIONS, ARCHIVED_MESSAGES, Bind, int};
use crate::store::{EventStore, SqlStore, StoreError, on_backend};

/// Above this many conversations a user's scope is a sub-query instead of a list of ids.
const MAX_LISTED_CONVERSATIONS: usize = 1000;
/// A search over every conversation ranks the newest this many matches: a common word has
/// hundreds of thousands, and reading them all to rank them costs seconds. Below this many the
/// result is exact.
pub const RECENT_MATCHES: u32 = 1000;
/// Index entries a search over every conversation reads, about, before it answers with the
/// matches among the newest messages and where the older ones begin (`CHAT_SEARCH_READ_BUDGET`):
/// a few common terms that rarely meet in one message would otherwise read every posting of the
/// rarest one.
pub const DEFAULT_SEARCH_READ_BUDGET: usize = 4_000;
/// Postings counted per term to see how common it is among the newest messages.
const DENSITY_PROBE: i64 = 128;
/// How many of the rarest term's newest postings a search over every conversation reads first.
const FIRST_WINDOW: i64 = 1000;
/// What looking a term up for one message costs, in index entries read in order (measured on
/// MariaDB: 500 lookups about as long as 1,000 entries of a range): a term with more postings
/// than this many per candidate in the candidates' range is looked up, a rarer one read whole.
const LOOKUP_COST: i64 = 2;
/// Message ids per key lookup statement.
const LOOKUP_CHUNK: usize = 1000;

/// Which page of a search, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchRequest {
    /// From 1.
    pub page: u32,
    pub limit: u32,
    /// Only messages older than this one (the `older_than` of an earlier answer).
    pub before: Option<u64>,
    /// Index entries a search over every conversation reads before it answers.
    pub read_budget: usize,
}

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
}

const MYSQL: Hints = Hints {
    recent_index: "force index (search_terms_recent)",
    scope_index: "force index (search_terms_term)",
};

const SQLITE: Hints = Hints {
    recent_index: "indexed by search_terms_recent",
    scope_index: "indexed by search_terms_term",
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
    /// Where the messages the search did not look at begin: ask again with this as `before`.
    /// None when every message was searched; otherwise `total` counts the matches from here on.
    pub older_than: Option<u64>,
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
    /// One page of the messages matching every term of `query`, most relevant first
    /// (occurrences of the query's terms), then newest; and how many match in all. Over every
    /// conversation, only the newest [`RECENT_MATCHES`] matches are ranked, and the search stops
    /// after `read_budget` index entries: `older_than` then says where to go on.
    pub async fn search(
        &self,
        scope: &SearchScope,
        query: &SearchQuery,
        request: &SearchRequest,
    ) -> Result<SearchResults, StoreError> {
        if *scope == SearchScope::All {
            let recent = on_backend!(self, s => {
                s.search_recent(query, request, s.search_hints()).await?
            });
            if let Some(results) = recent {
                return Ok(results);
            }
        }
        on_backend!(self, s => s.search(scope, query, request, s.search_hints()).await)
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
        request: &SearchRequest,
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
                        &format!(
                            "select id from conversations where user_id = ? union all \
                             select id from {ARCHIVED_CONVERSATIONS} where user_id = ?"
                        ),
                        vec![int(*user_id), int(*user_id)],
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
                    scope_binds.extend([int(*user_id), int(*user_id)]);
                    format!(
                        " and t.conversation_id in (select id from conversations where user_id = ? \
                         union all select id from {ARCHIVED_CONVERSATIONS} where user_id = ?)"
                    )
                }
            }
        };
        let scope_sql = match request.before {
            Some(before) => {
                scope_binds.push(int(before));
                format!("{scope_sql} and t.message_id < ?")
            }
            None => scope_sql,
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
        let limit = request.limit.max(1);
        let offset = u64::from(request.page.max(1) - 1) * u64::from(limit);
        binds.push(Bind::Int(i64::from(limit)));
        binds.push(int(offset));
        let sql = format!(
            "select {HIT_COLUMNS}, count(*) over () as total \
             from {source} where m.id is not null{verify_sql} \
             order by m.score desc, m.id desc limit ? offset ?",
            source = matched_messages(&matches),
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
            let first = SearchRequest {
                page: 1,
                limit: 1,
                ..*request
            };
            total = Box::pin(self.search(scope, query, &first, hints))
                .await?
                .total;
        }
        Ok(SearchResults {
            hits,
            total,
            older_than: None,
        })
    }

    /// A search over every conversation, newest messages first, that stops at the newest
    /// [`RECENT_MATCHES`] matches or once it has read `read_budget` index entries, and ranks
    /// what it found. Every match holds the query's rarest term, so the search walks that term's
    /// postings newest first, in windows, and keeps the window's messages that hold every other
    /// term: a term read whole over the window's range when it is about as rare, looked up per
    /// candidate when it is far more common. The messages from the oldest one walked on are then
    /// searched completely; `older_than` says where the rest begins. None when the query has no
    /// term.
    async fn search_recent(
        &self,
        query: &SearchQuery,
        request: &SearchRequest,
        hints: &Hints,
    ) -> Result<Option<SearchResults>, StoreError> {
        if query.terms.is_empty() {
            return Ok(None);
        }
        let below = request
            .before
            .map_or(i64::MAX, |id| i64::try_from(id).unwrap_or(i64::MAX));
        // Index entries read so far (a lookup counts as `LOOKUP_COST`).
        let mut read = 0i64;
        let mut terms = self.densities(&query.terms, below, hints).await?;
        read += terms.iter().map(|term| term.counted).sum::<i64>();
        terms.sort_by(TermDensity::rarer_first);
        let rarest = terms.remove(0);
        let budget = i64::try_from(request.read_budget).unwrap_or(i64::MAX);
        let wanted = RECENT_MATCHES as usize;
        let mut matches: Vec<(i64, i64)> = Vec::new();
        let mut upper = below;
        let mut window = FIRST_WINDOW.min((budget - read).max(FIRST_WINDOW / 4));
        let older_than = loop {
            if rarest.counted == 0 {
                break None;
            }
            let read_before = read;
            let mut candidates = self
                .postings(&rarest.term, 0, upper, Some(window), hints)
                .await?;
            read += candidates.len() as i64;
            let walked_all = (candidates.len() as i64) < window;
            // The window holds every posting of the rarest term in [lowest, upper).
            let lowest = candidates.last().map_or(0, |(id, _)| *id);
            for term in &terms {
                let (Some((newest, _)), Some((oldest, _))) =
                    (candidates.first(), candidates.last())
                else {
                    break;
                };
                let (oldest, newest) = (*oldest, *newest);
                let lookups = LOOKUP_COST * candidates.len() as i64;
                let others = if term.estimate(oldest, newest + 1) <= lookups {
                    let others = self
                        .postings(&term.term, oldest, newest + 1, None, hints)
                        .await?;
                    read += others.len() as i64;
                    others
                } else {
                    read += lookups;
                    self.postings_of(&term.term, &candidates, hints).await?
                };
                candidates = intersect(&candidates, &others);
            }
            if !query.phrases.is_empty() && !candidates.is_empty() {
                read += LOOKUP_COST * candidates.len() as i64;
                candidates = self.holding_phrases(query, candidates).await?;
            }
            let found_here = candidates.len();
            matches.extend(candidates);
            if matches.len() > wanted || (matches.len() == wanted && !walked_all) {
                // Older matches may follow the newest `wanted`, below the last one kept.
                matches.truncate(wanted);
                break matches.last().map(|(id, _)| *id);
            }
            if walked_all {
                break None;
            }
            if read >= budget {
                break Some(lowest);
            }
            upper = lowest;
            // Widen toward the share of matches seen so far, but only as far as what is left
            // of the budget pays for at this window's cost per posting.
            let needed = (wanted - matches.len()) as i64;
            let grown = if found_here == 0 {
                window * 8
            } else {
                needed * window * 5 / 4 / found_here as i64
            };
            let cost_per_posting = ((read - read_before) / window).max(1);
            window = grown
                .clamp(window * 2, window * 16)
                .min(((budget - read) / cost_per_posting).max(FIRST_WINDOW / 4));
        };
        let total = matches.len() as u64;
        matches.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        let limit = request.limit.max(1) as usize;
        let offset = (request.page.max(1) as usize - 1).saturating_mul(limit);
        let page_ids: Vec<i64> = matches
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(id, _)| *id)
            .collect();
        let mut hits = Vec::with_capacity(page_ids.len());
        if !page_ids.is_empty() {
            let placeholders = vec!["?"; page_ids.len()].join(", ");
            let ids = page_ids.iter().copied().map(Bind::Int);
            let rows = self
                .fetch(
                    &live_and_archived(|table| {
                        format!(
                            "select {HIT_COLUMNS} from {table} m where m.id in ({placeholders})"
                        )
                    }),
                    ids.clone().chain(ids).collect(),
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
            older_than: older_than.and_then(|id| u64::try_from(id).ok()),
        }))
    }

    /// How common each of `terms` is below message id `below`: the newest [`DENSITY_PROBE`]
    /// postings of each there, at most, are counted; one statement for all.
    async fn densities(
        &self,
        terms: &[String],
        below: i64,
        hints: &Hints,
    ) -> Result<Vec<TermDensity>, StoreError> {
        let probe = |n: usize| {
            format!(
                "select {n}, count(*), coalesce(min(message_id), 0), coalesce(max(message_id), 0) \
                 from (select message_id from search_terms {} \
                 where term = ? and message_id < ? order by message_id desc limit ?) probe{n}",
                hints.recent_index
            )
        };
        let sql = (0..terms.len())
            .map(probe)
            .collect::<Vec<_>>()
            .join(" union all ");
        let binds = terms
            .iter()
            .flat_map(|term| {
                [
                    Bind::Text(term.clone()),
                    Bind::Int(below),
                    Bind::Int(DENSITY_PROBE),
                ]
            })
            .collect();
        let mut densities: Vec<TermDensity> = terms
            .iter()
            .map(|term| TermDensity {
                term: term.clone(),
                counted: 0,
                oldest: 0,
                newest: 0,
            })
            .collect();
        for row in &self.fetch(&sql, binds).await? {
            let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx);
            if let Some(density) = usize::try_from(int(0)?)
                .ok()
                .and_then(|n| densities.get_mut(n))
            {
                density.counted = int(1)?;
                density.oldest = int(2)?;
                density.newest = int(3)?;
            }
        }
        Ok(densities)
    }

    /// The postings (message id, hits) of `term` in messages `from..below`, newest first, at
    /// most `limit` of them.
    async fn postings(
        &self,
        term: &str,
        from: i64,
        below: i64,
        limit: Option<i64>,
        hints: &Hints,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut binds = vec![
            Bind::Text(term.to_string()),
            Bind::Int(from),
            Bind::Int(below),
        ];
        let mut sql = format!(
            "select message_id, hits from search_terms {} \
             where term = ? and message_id >= ? and message_id < ? order by message_id desc",
            hints.recent_index
        );
        if let Some(limit) = limit {
            sql.push_str(" limit ?");
            binds.push(Bind::Int(limit));
        }
        self.fetch(&sql, binds).await?.iter().map(posting).collect()
    }

    /// The postings of `term` in the messages of `candidates` (newest first), newest first:
    /// key lookups, for a term far more common than the candidates. Named to the planner: left
    /// to itself, MariaDB read every posting of the term and filtered them by the list.
    async fn postings_of(
        &self,
        term: &str,
        candidates: &[(i64, i64)],
        hints: &Hints,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut found = Vec::with_capacity(candidates.len());
        for chunk in candidates.chunks(LOOKUP_CHUNK) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let mut binds = vec![Bind::Text(term.to_string())];
            binds.extend(chunk.iter().map(|(id, _)| Bind::Int(*id)));
            let rows = self
                .fetch(
                    &format!(
                        "select message_id, hits from search_terms {} \
                         where term = ? and message_id in ({placeholders})",
                        hints.recent_index
                    ),
                    binds,
                )
                .await?;
            for row in &rows {
                found.push(posting(row)?);
            }
        }
        found.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        Ok(found)
    }

    /// The `candidates` whose text holds every one of the query's longer CJK runs (bigrams do
    /// not prove that a run is contiguous: the text does).
    async fn holding_phrases(
        &self,
        query: &SearchQuery,
        candidates: Vec<(i64, i64)>,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let (conditions, phrase_binds) = phrase_conditions(query);
        let mut holding = std::collections::HashSet::new();
        for chunk in candidates.chunks(LOOKUP_CHUNK) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let mut binds: Vec<Bind> = chunk.iter().map(|(id, _)| Bind::Int(*id)).collect();
            binds.extend(phrase_binds.iter().cloned());
            let rows = self
                .fetch(
                    &live_and_archived(|table| {
                        format!(
                            "select m.id from {table} m where m.id in ({placeholders}) and {}",
                            conditions.join(" and ")
                        )
                    }),
                    binds.iter().chain(&binds).cloned().collect(),
                )
                .await?;
            for row in &rows {
                holding.insert(row.try_get::<i64, _>(0).map_err(StoreError::from_sqlx)?);
            }
        }
        Ok(candidates
            .into_iter()
            .filter(|(id, _)| holding.contains(id))
            .collect())
    }
}

/// How common a term is in the newest messages: `counted` of its postings (at most
/// [`DENSITY_PROBE`]) lie between message ids `oldest` and `newest`.
#[derive(Debug)]
struct TermDensity {
    term: String,
    counted: i64,
    oldest: i64,
    newest: i64,
}

impl TermDensity {
    /// Rarer first: a term with fewer postings than the probe counts them all; otherwise the
    /// one whose newest postings spread over more messages is rarer.
    fn rarer_first(a: &TermDensity, b: &TermDensity) -> std::cmp::Ordering {
        let a_all = a.counted < DENSITY_PROBE;
        let b_all = b.counted < DENSITY_PROBE;
        match (a_all, b_all) {
            (true, true) => a.counted.cmp(&b.counted),
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            (false, false) => a.oldest.cmp(&b.oldest),
        }
    }

    /// About how many postings the term has in messages `from..below`.
    fn estimate(&self, from: i64, below: i64) -> i64 {
        if self.counted < DENSITY_PROBE {
            return self.counted;
        }
        let spread = (self.newest - self.oldest).max(1);
        let span = (below - from).max(0);
        i64::try_from(i128::from(self.counted) * i128::from(span) / i128::from(spread))
            .unwrap_or(i64::MAX)
    }
}

/// The postings of `ours` whose message is also in `theirs` (both newest first), their hits
/// summed.
fn intersect(ours: &[(i64, i64)], theirs: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut both = Vec::new();
    let mut rest = theirs.iter().peekable();
    for (id, hits) in ours {
        while rest.next_if(|(other, _)| other > id).is_some() {}
        if let Some((_, more)) = rest.next_if(|(other, _)| other == id) {
            both.push((*id, hits + more));
        }
    }
    both
}

/// A (message id, hits) posting from a row of those two columns.
fn posting<R: Row>(row: &R) -> Result<(i64, i64), StoreError>
where
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    usize: ColumnIndex<R>,
{
    let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx);
    Ok((int(0)?, int(1)?))
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

/// The matches (`message_id, score`) with their messages as `m` (its columns and the score),
/// from the live table or the archive; `m.id` is null where the message is in neither.
fn matched_messages(matches: &str) -> String {
    let columns = HIT_COLUMNS
        .split(',')
        .map(|column| column.trim().trim_start_matches("m."))
        .map(|column| format!("coalesce(h.{column}, a.{column}) as {column}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "(select s.score, {columns} from ({matches}) s \
         left join messages h on h.id = s.message_id \
         left join {ARCHIVED_MESSAGES} a on h.id is null and a.id = s.message_id) m"
    )
}

/// A query over messages `m`, once on the live table and once on the archive (a message is
/// in one of them): `select` given each table's name.
fn live_and_archived(select: impl Fn(&str) -> String) -> String {
    format!(
        "{} union all {}",
        select("messages"),
        select(ARCHIVED_MESSAGES)
    )
}

/// The condition on `messages m` that the query's longer CJK runs occur in the text (bigrams do
/// not prove that a run is contiguous: the text does), as " and ..." or nothing.
fn phrase_check(query: &SearchQuery) -> (String, Vec<Bind>) {
    let (conditions, binds) = phrase_conditions(query);
    if conditions.is_empty() {
        return (String::new(), binds);
    }
    (format!(" and {}", conditions.join(" and ")), binds)
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
            older_than: None,
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

    #[test]
    fn an_intersection_keeps_the_messages_in_both_newest_first_with_hits_summed() {
        let ours = [(90, 1), (70, 2), (50, 1), (10, 1)];
        let theirs = [(95, 1), (70, 3), (60, 1), (10, 2), (5, 1)];
        assert_eq!(intersect(&ours, &theirs), [(70, 5), (10, 3)]);
        assert_eq!(intersect(&ours, &[]), []);
        assert_eq!(intersect(&[], &theirs), []);
    }

    fn density(counted: i64, oldest: i64, newest: i64) -> TermDensity {
        TermDensity {
            term: String::new(),
            counted,
            oldest,
            newest,
        }
    }

    #[test]
    fn a_term_counted_whole_is_rarer_than_one_that_filled_the_probe() {
        let full = DENSITY_PROBE;
        let dense = density(full, 900, 1000);
        let sparse = density(full, 100, 1000);
        let few = density(3, 10, 20);
        let none = density(0, 0, 0);
        let mut terms = [dense, few, sparse, none];
        terms.sort_by(TermDensity::rarer_first);
        let order: Vec<(i64, i64)> = terms.iter().map(|t| (t.counted, t.oldest)).collect();
        assert_eq!(order, [(0, 0), (3, 10), (full, 100), (full, 900)]);
    }

    #[test]
    fn a_terms_postings_in_a_range_are_estimated_from_its_spread() {
        // 128 postings over 1,000 messages: about 12.8 in every 100.
        let term = density(DENSITY_PROBE, 1000, 2000);
        assert_eq!(term.estimate(0, 100), 12);
        assert_eq!(term.estimate(0, 10_000), 1280);
        assert_eq!(term.estimate(500, 100), 0);
        // Counted whole: never more than it has.
        assert_eq!(density(7, 1, 5).estimate(0, 1_000_000), 7);
    }
}
