-- The fold of a long conversation at a sequence of its stream, so the first command on it after a
-- restart reads only the events after that. Written in the append transaction as a stream passes
-- each 1,000 events; a cache of the log: dropping it only makes the next cold load fold more.
-- A snapshot counts only while the event at its sequence has its hash.
create table conversation_snapshots (
    conversation_id bigint not null primary key,
    sequence bigint not null,
    hash char(64) not null,
    -- The shape of `state`; a snapshot of another shape is ignored.
    format int not null,
    state longtext not null
) engine = innodb default charset = utf8mb4 collate = utf8mb4_unicode_ci;
