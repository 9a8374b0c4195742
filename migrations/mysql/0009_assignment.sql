-- Conversations that automatic assignment found no available admin for, oldest first: written
-- only by the node that holds the assignment lease; not a projection (never replayed).
create table assignment_waiting (
    conversation_id bigint not null primary key,
    since_position bigint not null,
    -- The admin it had then (a reopened conversation's away admin): another one now means
    -- someone assigned it meanwhile.
    admin_id bigint null,
    key assignment_waiting_since (since_position)
) engine = innodb default charset = utf8mb4 collate = utf8mb4_unicode_ci;
