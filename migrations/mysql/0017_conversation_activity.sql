-- Lists show the most recently active conversations first: the time of the last message, else of
-- the opening. Kept as a column of its own (folded from the log like the others) so that an
-- index gives a page in that order without sorting every conversation. It replaces the indexes
-- on `last_message_at`, which no list could use.
alter table conversations
    add column activity_at bigint not null default 0,
    drop index conversations_status,
    drop index conversations_last_message,
    add index conversations_activity (activity_at, id),
    add index conversations_status_activity (status, activity_at, id);
update conversations set activity_at = coalesce(last_message_at, created_at);
alter table conversations_archive
    add column activity_at bigint not null default 0,
    drop index conversations_status,
    drop index conversations_last_message,
    add index conversations_activity (activity_at, id),
    add index conversations_status_activity (status, activity_at, id);
update conversations_archive set activity_at = coalesce(last_message_at, created_at);
