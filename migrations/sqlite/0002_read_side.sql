-- Read tables, folded from the log by projectors; disposable (`chatd replay` rebuilds them).
-- Times are microseconds since the Unix epoch, as in the log.
create table conversations (
    id integer not null primary key,
    user_id integer not null,
    user_identifier text not null,
    admin_id integer null,
    status text not null,
    last_message_id integer null,
    last_message_preview text null,
    last_message_sender_role text null,
    last_message_type text null,
    last_message_at integer null,
    message_count integer not null,
    unread_for_user integer not null,
    unread_for_admin integer not null,
    feedback_rating integer null,
    feedback_comment text null,
    feedback_at integer null,
    closed_at integer null,
    created_at integer not null,
    updated_at integer not null,
    version integer not null
);
create index conversations_user on conversations (user_id, status);
create index conversations_admin on conversations (admin_id);
create index conversations_status on conversations (status, last_message_at);
create index conversations_last_message on conversations (last_message_at);

create table messages (
    id integer not null primary key,
    conversation_id integer not null,
    user_id integer null,
    admin_id integer null,
    sender_role text not null,
    sender_identifier text not null,
    message_type text not null,
    content text not null,
    file_id text null,
    file_url text null,
    client_msg_id text null,
    metadata text null,
    is_read integer not null,
    read_at integer null,
    timestamp integer not null,
    position integer not null
);
create index messages_conversation on messages (conversation_id, id);
create index messages_timestamp on messages (timestamp);

-- One row per projector: its checkpoint, its lease (one node at a time applies it) and its last error.
create table projector_state (
    name text not null primary key,
    position integer not null,
    holder text null,
    lease_expires_at integer not null,
    last_error text null,
    updated_at integer not null
);
