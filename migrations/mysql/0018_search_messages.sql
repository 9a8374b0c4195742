-- The messages the search index holds terms of, by conversation: an erasure finds a
-- conversation's terms through these keys instead of reading the whole index (which also held a
-- lock on every row it read). One row per message, not per term, so the index's writes barely
-- grow. Folded by the search projector like `search_terms`; filled here from what it holds.
create table search_messages (
    conversation_id bigint not null,
    message_id bigint not null,
    primary key (conversation_id, message_id)
) engine = innodb;
insert into search_messages (conversation_id, message_id)
    select distinct conversation_id, message_id from search_terms;
