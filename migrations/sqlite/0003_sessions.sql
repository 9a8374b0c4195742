-- Bearer sessions when no Redis is configured. The token itself is never stored: only its
-- SHA-256 (hex), so a copy of the database does not hand out sessions.
create table sessions (
    token_hash text not null primary key,
    user_id integer not null,
    role text not null,
    identifier text not null,
    expires_at integer not null,
    created_at integer not null
);
create index sessions_expires_at on sessions (expires_at);
