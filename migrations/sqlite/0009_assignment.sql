-- Conversations that automatic assignment found no available admin for, oldest first: written
-- only by the node that holds the assignment lease; not a projection (never replayed).
create table assignment_waiting (
    conversation_id integer not null primary key,
    since_position integer not null,
    -- The admin it had then (a reopened conversation's away admin): another one now means
    -- someone assigned it meanwhile.
    admin_id integer null
);
create index assignment_waiting_since on assignment_waiting (since_position);
