-- Read tables, folded from the log by projectors; disposable (`chatd replay` rebuilds them).
-- Times are microseconds since the Unix epoch, as in the log.
create table conversations (
    id bigint not null primary key,
    user_id bigint not null,
    user_identifier varchar(255) not null,
    admin_id bigint null,
    status varchar(16) not null,
    last_message_id bigint null,
    last_message_preview varchar(255) null,
    last_message_sender_role varchar(16) null,
    last_message_type varchar(16) null,
    last_message_at bigint null,
    message_count bigint not null,
    unread_for_user bigint not null,
    unread_for_admin bigint not null,
    feedback_rating bigint null,
    feedback_comment text null,
    feedback_at bigint null,
    closed_at bigint null,
    created_at bigint not null,
    updated_at bigint not null,
    version bigint not null,
    key conversations_user (user_id, status),
    key conversations_admin (admin_id),
    key conversations_status (status, last_message_at),
    key conversations_last_message (last_message_at)
) engine = innodb default charset = utf8mb4 collate = utf8mb4_unicode_ci;

create table messages (
    id bigint not null primary key,
    conversation_id bigint not null,
    user_id bigint null,
    admin_id bigint null,
    sender_role varchar(16) not null,
    sender_identifier varchar(255) not null,
    message_type varchar(16) not null,
    content text not null,
    file_id varchar(255) null,
    file_url varchar(500) null,
    client_msg_id varchar(64) null,
    metadata text null,
    is_read bigint not null,
    read_at bigint null,
    timestamp bigint not null,
    position bigint not null,
    key messages_conversation (conversation_id, id),
    key messages_timestamp (timestamp)
) engine = innodb default charset = utf8mb4 collate = utf8mb4_unicode_ci;

-- One row per projector: its checkpoint, its lease (one node at a time applies it) and its last error.
create table projector_state (
    name varchar(64) not null primary key,
    position bigint not null,
    holder varchar(128) null,
    lease_expires_at bigint not null,
    last_error text null,
    updated_at bigint not null
) engine = innodb default charset = utf8mb4 collate = utf8mb4_unicode_ci;
