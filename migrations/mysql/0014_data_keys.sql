-- One data key per conversation: the text people typed in its events (message text, upload names,
-- feedback comments) is stored sealed under it, and destroying it erases that text from the log.
-- Part of the log's truth, not a read table: a replay never touches it.
create table data_keys (
    conversation_id bigint not null primary key,
    key_id varchar(64) character set ascii not null,
    -- The master key (CHAT_ENCRYPTION_KEY_FILE) that wrapped `material`; null: stored as it is.
    master_key_id varchar(64) character set ascii null,
    -- Base64: the key, or the wrapped key (nonce, ciphertext, tag).
    material varchar(255) character set ascii not null,
    created_at bigint not null,
    key data_keys_master (master_key_id)
) engine = innodb;
