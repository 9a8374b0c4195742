-- Analytics facts, folded from the log by the `analytics` projector; disposable (`chatd replay`).
-- kind: 1 opened, 2 closed, 3 user message, 4 admin message, 5 reply, 6 first response,
-- 7 feedback; value: the wait in microseconds (5, 6) or the rating (7); recorded_at in µs.
create table analytics_facts (
    position integer not null,
    kind integer not null,
    conversation_id integer not null,
    recorded_at integer not null,
    admin_id integer null,
    value integer not null,
    primary key (position, kind)
);
create index analytics_facts_at on analytics_facts (recorded_at);

-- What the fold carries between batches, per conversation.
create table analytics_conversations (
    conversation_id integer not null primary key,
    waiting_since integer null,
    answered integer not null,
    assignee integer null,
    last_admin integer null
);
