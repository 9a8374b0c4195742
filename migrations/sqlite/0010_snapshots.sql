-- The fold of a long conversation at a sequence of its stream, so the first command on it after a
-- restart reads only the events after that. Written in the append transaction as a stream passes
-- each 1,000 events; a cache of the log: dropping it only makes the next cold load fold more.
-- A snapshot counts only while the event at its sequence has its hash.
create table conversation_snapshots (
    conversation_id integer not null primary key,
    sequence integer not null,
    hash text not null,
    -- The shape of `state`; a snapshot of another shape is ignored.
    format integer not null,
    state text not null
);
