-- Lists show the most recently active conversations first: the time of the last message, else of
-- the opening. Kept as a column of its own (folded from the log like the others) so that an
-- index gives a page in that order without sorting every conversation. It replaces the indexes
-- on `last_message_at`, which no list could use.
alter table conversations add column activity_at integer not null default 0;
update conversations set activity_at = coalesce(last_message_at, created_at);
drop index conversations_status;
drop index conversations_last_message;
create index conversations_activity on conversations (activity_at, id);
create index conversations_status_activity on conversations (status, activity_at, id);
alter table conversations_archive add column activity_at integer not null default 0;
update conversations_archive set activity_at = coalesce(last_message_at, created_at);
drop index conversations_archive_status;
drop index conversations_archive_last_message;
create index conversations_archive_activity on conversations_archive (activity_at, id);
create index conversations_archive_status_activity
    on conversations_archive (status, activity_at, id);
