-- Reopened conversations whose admin was away or offline and that automatic assignment found no
-- available admin for, oldest first (new ones wait as active conversations without an admin).
-- Written only by the node that holds the assignment lease; not a projection (never replayed).
create table assignment_waiting (
    conversation_id integer not null primary key,
    waiting_since integer not null,
    -- The admin it had then (a reopened conversation's away admin): another one now means
    -- someone assigned it meanwhile.
    admin_id integer null
);
create index assignment_waiting_since on assignment_waiting (waiting_since);
