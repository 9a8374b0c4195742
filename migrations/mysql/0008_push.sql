-- Push notifications. Devices are registered state, not events: a token is a delivery address
-- that the providers revoke on their own, so it lives beside the log, not in it.
create table push_devices (
    token varchar(512) character set ascii collate ascii_bin not null primary key,
    role varchar(16) not null,
    user_id bigint not null,
    platform varchar(16) not null,
    provider varchar(16) not null,
    created_at bigint not null,
    updated_at bigint not null,
    key push_devices_owner (role, user_id, updated_at)
) engine = innodb default charset = utf8mb4 collate = utf8mb4_unicode_ci;

-- Pushes to send, written by the push follower in the transaction that moves its checkpoint
-- (`projector_state` row `push`), then claimed (`state` = 'sending') before the request leaves,
-- so a message is pushed at most once per device. Sent rows stay for the collapse window.
create table push_outbox (
    id bigint not null auto_increment primary key,
    token varchar(512) character set ascii collate ascii_bin not null,
    provider varchar(16) not null,
    platform varchar(16) not null,
    conversation_id bigint not null,
    message_id bigint not null,
    payload text not null,
    state varchar(16) not null,
    attempts bigint not null,
    not_before bigint not null,
    claimed_by varchar(160) null,
    claimed_at bigint null,
    recorded_at bigint not null,
    created_at bigint not null,
    key push_outbox_due (state, not_before),
    key push_outbox_device (token, conversation_id, state),
    key push_outbox_claim (claimed_by)
) engine = innodb default charset = utf8mb4 collate = utf8mb4_unicode_ci;
