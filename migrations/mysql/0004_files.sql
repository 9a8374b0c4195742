-- One row per upload (projection "files"): what a download needs to find, type and authorize it.
create table files (
    file_id varchar(64) not null primary key,
    conversation_id bigint not null,
    uploader_role varchar(16) not null,
    uploader_id bigint not null,
    kind varchar(16) not null,
    original_name varchar(255) not null,
    size bigint not null,
    mime_type varchar(100) not null,
    sha256 char(64) not null,
    path varchar(255) not null,
    width bigint null,
    height bigint null,
    uploaded_at bigint not null,
    position bigint not null,
    key files_conversation (conversation_id)
) engine = innodb default charset = utf8mb4 collate = utf8mb4_unicode_ci;
