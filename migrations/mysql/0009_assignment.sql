-- Reopened conversations whose admin was away or offline and that automatic assignment found no
-- available admin for, oldest first (new ones wait as active conversations without an admin).
-- Written only by the node that holds the assignment lease; not a projection (never replayed).
create table assignment_waiting (
    conversation_id bigint not null primary key,
    waiting_since bigint not null,
    -- The admin it had then (a reopened conversation's away admin): another one now means
    -- someone assigned it meanwhile.
    admin_id bigint null,
    key assignment_waiting_since (waiting_since)
) engine = innodb default charset = utf8mb4 collate = utf8mb4_unicode_ci;
