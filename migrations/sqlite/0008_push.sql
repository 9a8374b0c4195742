-- Push notifications. Devices are registered state, not events: a token is a delivery address
-- that the providers revoke on their own, so it lives beside the log, not in it.
create table push_devices (
    token text not null primary key,
    role text not null,
    user_id integer not null,
    platform text not null,
    provider text not null,
    created_at integer not null,
    updated_at integer not null
);
create index push_devices_owner on push_devices (role, user_id, updated_at);

-- Pushes to send, written by the push follower in the transaction that moves its checkpoint
-- (`projector_state` row `push`), then claimed (`state` = 'sending') before the request leaves,
-- so a message is pushed at most once per device. Sent rows stay for the collapse window.
create table push_outbox (
    id integer not null primary key autoincrement,
    token text not null,
    provider text not null,
    platform text not null,
    conversation_id integer not null,
    message_id integer not null,
    payload text not null,
    state text not null,
    attempts integer not null,
    not_before integer not null,
    claimed_by text null,
    claimed_at integer null,
    recorded_at integer not null,
    created_at integer not null
);
create index push_outbox_due on push_outbox (state, not_before);
create index push_outbox_device on push_outbox (token, conversation_id, state);
create index push_outbox_claim on push_outbox (claimed_by);
