-- Image and file messages carry what their upload recorded of the file (name, size, type and, for
-- images, pixels), so a client can lay a message out before it downloads anything. Rows folded from
-- messages recorded before the log carried these keep nulls; a replay gives the same.
alter table messages add column file_name text null;
alter table messages add column file_size integer null;
alter table messages add column mime_type text null;
alter table messages add column width integer null;
alter table messages add column height integer null;
