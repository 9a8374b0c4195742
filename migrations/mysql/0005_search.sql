-- The search index, folded from the log by the `search` projector; disposable (`chatd replay`).
-- Terms are lower-cased words and CJK character bigrams, compared byte for byte.
create table search_terms (
    term varchar(64) character set utf8mb4 collate utf8mb4_bin not null,
    conversation_id bigint not null,
    message_id bigint not null,
    hits bigint not null,
    primary key (term, conversation_id, message_id)
) engine = innodb default charset = utf8mb4 collate = utf8mb4_bin;
