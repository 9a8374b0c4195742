-- The search index clustered by message, as on MySQL: new rows (and a replay's, in log order)
-- append to the table instead of landing all over it, and the joins that check a candidate
-- message for a term are key lookups. The term index serves the lookups by term.
create table search_terms_by_message (
    term text not null,
    conversation_id integer not null,
    message_id integer not null,
    hits integer not null,
    primary key (message_id, term)
) without rowid;
insert into search_terms_by_message (term, conversation_id, message_id, hits)
    select term, conversation_id, message_id, hits from search_terms;
drop table search_terms;
alter table search_terms_by_message rename to search_terms;
create index search_terms_term on search_terms (term, conversation_id, message_id, hits);
create index search_terms_recent on search_terms (term, message_id, hits);
