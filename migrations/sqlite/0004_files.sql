-- One row per upload (projection "files"): what a download needs to find, type and authorize it.
create table files (
    file_id text not null primary key,
    conversation_id integer not null,
    uploader_role text not null,
    uploader_id integer not null,
    kind text not null,
    original_name text not null,
    size integer not null,
    mime_type text not null,
    sha256 text not null,
    path text not null,
    width integer null,
    height integer null,
    uploaded_at integer not null,
    position integer not null
);
create index files_conversation on files (conversation_id);
