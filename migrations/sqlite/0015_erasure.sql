-- Erasure (the ConversationErased event): rows keep their ids, roles, times and types, their text
-- becomes empty and they say so. Both are folded from the log, like every read column.
alter table messages add column erased integer not null default 0;
alter table conversations add column erased integer not null default 0;
