-- The event log: the only source of truth. Positions are handed out by the
-- sequencer row under its lock, so commit order equals position order.
create table events (
    position bigint not null primary key,
    stream_type varchar(64) not null,
    stream_id varchar(64) not null,
    sequence bigint not null,
    event_type varchar(128) not null,
    event_version varchar(16) not null,
    payload longtext not null,
    metadata longtext not null,
    recorded_at bigint not null,
    hash char(64) not null,
    unique key events_stream_sequence (stream_type, stream_id, sequence)
) engine = innodb default charset = utf8mb4 collate = utf8mb4_unicode_ci;

-- One row; every append transaction locks it first. It holds the next
-- position and the next message and conversation ids, so ids increase in
-- commit order system-wide.
create table event_sequencer (
    id int not null primary key,
    next_position bigint not null,
    next_message_id bigint not null,
    next_conversation_id bigint not null
) engine = innodb;

insert into event_sequencer (id, next_position, next_message_id, next_conversation_id)
values (1, 1, 1, 1);

-- A sender's client_msg_id, written in the same transaction as its message:
-- a retry finds the original instead of appending again.
create table message_idempotency (
    conversation_id bigint not null,
    sender_role varchar(16) not null,
    sender_id bigint not null,
    client_msg_id varchar(64) character set utf8mb4 collate utf8mb4_bin not null,
    position bigint not null,
    primary key (conversation_id, sender_role, sender_id, client_msg_id),
    key message_idempotency_sender (sender_role, sender_id, client_msg_id)
) engine = innodb default charset = utf8mb4;

-- Write-side index of each user's active conversation (at most one), kept in
-- the append transaction because the domain decides with it.
create table active_conversations (
    user_id bigint not null primary key,
    conversation_id bigint not null
) engine = innodb;
