-- Analytics facts, folded from the log by the `analytics` projector; disposable (`chatd replay`).
-- kind: 1 opened, 2 closed, 3 user message, 4 admin message, 5 reply, 6 first response,
-- 7 feedback; value: the wait in microseconds (5, 6) or the rating (7); recorded_at in µs.
create table analytics_facts (
    position bigint not null,
    kind tinyint not null,
    conversation_id bigint not null,
    recorded_at bigint not null,
    admin_id bigint null,
    value bigint not null,
    primary key (position, kind),
    key analytics_facts_at (recorded_at)
) engine = innodb;

-- What the fold carries between batches, per conversation.
create table analytics_conversations (
    conversation_id bigint not null primary key,
    waiting_since bigint null,
    answered tinyint not null,
    assignee bigint null,
    last_admin bigint null
) engine = innodb;
