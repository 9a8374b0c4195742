-- Archived conversations (the ConversationArchived event; archived is final) live in tables of
-- their own, so the tables every live query reads stay the size of the open work, not of the
-- history. The projectors move a conversation's rows when they fold its archival; a replay
-- folds the same. Rows archived before these tables existed are moved here once.
create table conversations_archive (
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
    version integer not null,
    erased integer not null default 0
);
create index conversations_archive_user on conversations_archive (user_id, status);
create index conversations_archive_admin on conversations_archive (admin_id);
create index conversations_archive_status on conversations_archive (status, last_message_at);
create index conversations_archive_last_message on conversations_archive (last_message_at);

create table messages_archive (
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
    position integer not null,
    file_name text null,
    file_size integer null,
    mime_type text null,
    width integer null,
    height integer null,
    erased integer not null default 0
);
create index messages_archive_conversation on messages_archive (conversation_id, id);
create index messages_archive_timestamp on messages_archive (timestamp);

insert into conversations_archive select * from conversations where status = 'archived';
insert into messages_archive
    select * from messages where conversation_id in (select id from conversations_archive);
delete from messages where conversation_id in (select id from conversations_archive);
delete from conversations where status = 'archived';
