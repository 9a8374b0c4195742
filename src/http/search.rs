//! `GET /api/chat/search`: messages matching a query, in the conversations the caller may read
//! (users: their own; admins and auditors: all), most relevant first, then newest. Reads the
//! `search_terms` index through the store; never writes.

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use events::Role;
use projections::{SearchQuery, search_is_cjk};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiQuery, Caller, bounded};
use crate::app::access::{readable, within_limit};
use crate::app::ids::wire_id;
use crate::app::{App, AppError};
use crate::files::Attachments;
use crate::limits::LimitKind;
use crate::store::{SearchHit, SearchRequest, SearchScope};
use crate::wire::{FileFields, Pagination, wire_time};
use crate::wire::{Success, success};

pub fn router() -> axum::Router<App> {
    axum::Router::new().route("/api/chat/search", get(search_messages))
}

const MIN_QUERY_CHARS: usize = 2;
const MAX_QUERY_CHARS: usize = 200;
const DEFAULT_PAGE_SIZE: u32 = 20;
const MAX_PAGE_SIZE: u32 = 50;
/// Deep pages cost a scan of everything before them; nobody reads page 1,001 of search results.
const MAX_PAGE_NUMBER: u32 = 1000;
/// Characters of context on each side of the first match.
const CONTEXT_CHARS: usize = 30;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// 2..=200 characters after trimming. Chinese, Japanese and Korean text is matched as a
    /// substring; other words whole and case-insensitively; every part must match. Single
    /// letters and digits outside those scripts are ignored (400 when nothing else is left);
    /// at most 8 distinct terms (words, single characters, pairs of neighbouring characters,
    /// at most 4 of those pairs per run of Chinese, Japanese or Korean text).
    #[param(required = true, min_length = 2, max_length = 200)]
    q: Option<String>,
    /// Only this conversation (which the caller must be allowed to read).
    conversation_id: Option<u64>,
    /// From 1 (at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    page: Option<u32>,
    /// 1..=50, default 20.
    #[param(minimum = 1, maximum = 50)]
    limit: Option<u32>,
    /// Only messages older than this message id: the `next_before_id` of an earlier answer,
    /// to search on where it stopped.
    #[param(minimum = 1)]
    before_id: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResult {
    message_id: u64,
    conversation_id: u64,
    content: String,
    /// `user`, `admin` or `system`.
    sender_role: String,
    /// RFC 3339 UTC, whole seconds.
    #[schema(example = "2025-07-14T10:35:00Z")]
    timestamp: String,
    /// The text around the first match, `...` where it is cut.
    #[schema(example = "...help with my account...")]
    context: String,
    /// `text`, `image`, `file` or `system`; an image or file message matches by its caption.
    message_type: String,
    file_id: Option<String>,
    /// As in a message: a link that stays the same for at least a day.
    file_url: Option<String>,
    file_name: Option<String>,
    file_size: Option<u64>,
    mime_type: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchPage {
    results: Vec<SearchResult>,
    pagination: Pagination,
    /// False when a search over every conversation stopped before it had looked at every
    /// message: at its newest 1,000 matches (those are ranked) or once it had read its share of
    /// the index. `pagination.total` then counts the matches from message `next_before_id` on.
    total_is_exact: bool,
    /// Null when every message was searched; otherwise the older messages begin below this id:
    /// the same search with `before_id` set to it goes on from there.
    #[schema(example = json!(null))]
    next_before_id: Option<u64>,
}

/// Searches messages.
#[utoipa::path(get, path = "/api/chat/search", tag = "messages", params(SearchParams),
    responses(
        (status = 200, body = Success<SearchPage>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 404, body = crate::wire::ErrorBody),
        (status = 429, body = crate::wire::ErrorBody), (status = 503, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn search_messages(
    State(state): State<App>,
    Caller(session): Caller,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<Success<SearchPage>>, AppError> {
    let q = params.q.as_deref().unwrap_or_default().trim();
    let length = q.chars().count();
    if length < MIN_QUERY_CHARS {
        return Err(AppError::validation(format!(
            "q must have at least {MIN_QUERY_CHARS} characters"
        )));
    }
    if length > MAX_QUERY_CHARS {
        return Err(AppError::validation(format!(
            "q must have at most {MAX_QUERY_CHARS} characters"
        )));
    }
    let query = SearchQuery::parse(q).map_err(|e| AppError::validation(e.to_string()))?;
    let page = bounded(params.page, 1, MAX_PAGE_NUMBER, "page")?;
    let limit = bounded(params.limit, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, "limit")?;
    // Counted once the query is known to be one: a malformed query costs nothing to refuse.
    within_limit(&state, &session, LimitKind::Searches).await?;
    state.fresh_for_with(&session, &["search"]).await;
    let scope = match params.conversation_id {
        Some(id) => {
            let conversation = readable(&state, &session, wire_id(id, "conversation_id")?).await?;
            SearchScope::Conversation(conversation.id)
        }
        None if session.role == Role::User => SearchScope::OwnedBy(session.user_id),
        None => SearchScope::All,
    };
    let request = SearchRequest {
        page,
        limit,
        before: params
            .before_id
            .map(|id| wire_id(id, "before_id"))
            .transpose()?,
        read_budget: state.search_read_budget,
    };
    let found = state.store.search(&scope, &query, &request).await?;
    Ok(Json(success(SearchPage {
        results: found
            .hits
            .into_iter()
            .map(|hit| result(hit, &query.needles, &state.attachments))
            .collect(),
        pagination: Pagination::new(page, limit, found.total),
        total_is_exact: found.older_than.is_none(),
        next_before_id: found.older_than,
    })))
}

fn result(hit: SearchHit, needles: &[String], attachments: &Attachments) -> SearchResult {
    let FileFields {
        file_name,
        file_size,
        mime_type,
        width,
        height,
    } = hit.attachment.into();
    SearchResult {
        message_id: hit.message_id,
        conversation_id: hit.conversation_id,
        context: context(&hit.content, needles),
        content: hit.content,
        sender_role: hit.sender_role,
        timestamp: wire_time(hit.timestamp),
        message_type: hit.message_type,
        file_id: hit.file_id,
        file_url: hit.file_path.map(|path| attachments.url(&path)),
        file_name,
        file_size,
        mime_type,
        width,
        height,
    }
}

fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

fn is_word_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() && !search_is_cjk(*c))
}

/// The text around the earliest match of any needle (whole words for Latin-script needles).
pub(crate) fn context(content: &str, needles: &[String]) -> String {
    let text: Vec<char> = content.chars().collect();
    let lowered: Vec<char> = text.iter().copied().map(lower).collect();
    let mut first: Option<(usize, usize)> = None;
    for needle in needles {
        let needle: Vec<char> = needle.chars().map(lower).collect();
        let Some(head) = needle.first() else {
            continue;
        };
        let whole_word = !search_is_cjk(*head);
        let found = (0..lowered.len().saturating_sub(needle.len() - 1)).find(|&i| {
            lowered[i..].starts_with(&needle)
                && !(whole_word
                    && (is_word_char(i.checked_sub(1).and_then(|j| lowered.get(j)))
                        || is_word_char(lowered.get(i + needle.len()))))
        });
        if let Some(at) = found
            && first.is_none_or(|(start, _)| at < start)
        {
            first = Some((at, needle.len()));
        }
    }
    let (at, len) = first.unwrap_or((0, 0));
    let start = at.saturating_sub(CONTEXT_CHARS);
    let end = (at + len + CONTEXT_CHARS).min(text.len());
    let mut snippet = String::new();
    if start > 0 {
        snippet.push_str("...");
    }
    snippet.extend(&text[start..end]);
    if end < text.len() {
        snippet.push_str("...");
    }
    snippet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_is_cut_around_the_first_match() {
        let content = format!(
            "{} I need help with my Account. {}",
            "x".repeat(40),
            "y".repeat(40)
        );
        let snippet = context(&content, &["account".to_string()]);
        assert!(
            snippet.starts_with("...") && snippet.ends_with("..."),
            "{snippet}"
        );
        assert!(snippet.contains("help with my Account"), "{snippet}");
    }

    #[test]
    fn a_short_message_is_its_own_context() {
        assert_eq!(context("我需要帮助", &["帮助".to_string()]), "我需要帮助");
    }

    #[test]
    fn latin_needles_match_whole_words() {
        let snippet = context(
            &format!("accountant {} account", "z".repeat(40)),
            &["account".into()],
        );
        assert!(snippet.starts_with("..."), "{snippet}");
    }
}
