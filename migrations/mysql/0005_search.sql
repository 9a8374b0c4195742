-- The search index, folded from the log by the `search` projector; disposable (`chatd replay`).
-- Terms are lower-cased words and CJK character bigrams, compared byte for byte.
create table search_terms (
    term varchar(64) character set utf8mb4 collate utf8mb4_bin not null,
    conversation_id bigint not null,
    message_id bigint not null,
    hits bigint not null,
    -- Rows arrive in message order: clustering by message keeps a replay's inserts sequential,
    -- and the term index (non-unique, so InnoDB can buffer its changes) serves the queries.
    primary key (message_id, term),
    key search_terms_term (term, conversation_id, message_id, hits)
) engine = innodb default charset = utf8mb4 collate = utf8mb4_bin;
