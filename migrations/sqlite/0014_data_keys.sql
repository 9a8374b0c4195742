-- One data key per conversation: the text people typed in its events (message text, upload names,
-- feedback comments) is stored sealed under it, and destroying it erases that text from the log.
-- Part of the log's truth, not a read table: a replay never touches it.
create table data_keys (
    conversation_id integer not null primary key,
    key_id text not null,
    -- The master key (CHAT_ENCRYPTION_KEY_FILE) that wrapped `material`; null: stored as it is.
    master_key_id text null,
    -- Base64: the key, or the wrapped key (nonce, ciphertext, tag).
    material text not null,
    created_at integer not null
);
create index data_keys_master on data_keys (master_key_id);
