-- The search index, folded from the log by the `search` projector; disposable (`chatd replay`).
-- Terms are lower-cased words and CJK character bigrams, compared byte for byte.
create table search_terms (
    term text not null,
    conversation_id integer not null,
    message_id integer not null,
    hits integer not null,
    primary key (term, conversation_id, message_id)
) without rowid;
