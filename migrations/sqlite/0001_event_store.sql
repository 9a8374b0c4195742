-- The event log: the only source of truth. Positions are handed out by the
-- sequencer row under the database write lock, so commit order equals position order.
create table events (
    position integer not null primary key,
    stream_type text not null,
    stream_id text not null,
    sequence integer not null,
    event_type text not null,
    event_version text not null,
    payload text not null,
    metadata text not null,
    recorded_at integer not null,
    hash text not null,
    unique (stream_type, stream_id, sequence)
);

-- One row; every append transaction writes it first, which takes the write lock.
create table event_sequencer (
    id integer not null primary key,
    next_position integer not null,
    next_message_id integer not null,
    next_conversation_id integer not null
);

insert into event_sequencer (id, next_position, next_message_id, next_conversation_id)
values (1, 1, 1, 1);

-- A sender's client_msg_id, written in the same transaction as its message.
create table message_idempotency (
    conversation_id integer not null,
    sender_role text not null,
    sender_id integer not null,
    client_msg_id text not null,
    position integer not null,
    primary key (conversation_id, sender_role, sender_id, client_msg_id)
);
create index message_idempotency_sender on message_idempotency (sender_role, sender_id, client_msg_id);

-- Write-side index of each user's active conversation (at most one).
create table active_conversations (
    user_id integer not null primary key,
    conversation_id integer not null
);
