-- Edited and deleted messages (the MessageEdited and MessageDeleted events): a row shows the
-- message's current text and when it was last edited; a deleted one keeps its id, sender, type
-- and time, loses its text and says who deleted it (`user`, `admin` or `system`). Every version
-- stays in the log. Folded from the log, like every read column.
alter table messages
    add column edited_at bigint null,
    add column deleted_by varchar(16) null;
alter table messages_archive
    add column edited_at bigint null,
    add column deleted_by varchar(16) null;
