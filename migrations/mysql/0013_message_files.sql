-- Image and file messages carry what their upload recorded of the file (name, size, type and, for
-- images, pixels), so a client can lay a message out before it downloads anything. Rows folded from
-- messages recorded before the log carried these keep nulls; a replay gives the same.
alter table messages
    add column file_name varchar(255) null,
    add column file_size bigint null,
    add column mime_type varchar(100) null,
    add column width bigint null,
    add column height bigint null;
