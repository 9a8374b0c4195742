-- Archived conversations (the ConversationArchived event; archived is final) live in tables of
-- their own, so the tables every live query reads stay the size of the open work, not of the
-- history. The projectors move a conversation's rows when they fold its archival; a replay
-- folds the same. Rows archived before these tables existed are moved here once.
create table conversations_archive like conversations;
create table messages_archive like messages;

insert into conversations_archive select * from conversations where status = 'archived';
insert into messages_archive
    select m.* from messages m join conversations_archive c on c.id = m.conversation_id;
delete m from messages m join conversations_archive c on c.id = m.conversation_id;
delete from conversations where status = 'archived';
