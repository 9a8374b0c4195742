-- Bearer sessions when no Redis is configured. The token itself is never stored: only its
-- SHA-256 (hex), so a copy of the database does not hand out sessions.
create table sessions (
    token_hash char(64) character set ascii not null primary key,
    user_id bigint not null,
    role varchar(16) not null,
    identifier varchar(255) not null,
    expires_at bigint not null,
    created_at bigint not null,
    key sessions_expires_at (expires_at)
) engine = innodb default charset = utf8mb4 collate = utf8mb4_unicode_ci;
