-- What `chatd import` reserved of the id sequences for the legacy system's ids: the highest
-- conversation and message id of the legacy rows it took in. Ids up to these are the legacy
-- system's (chatd's own continue above them); written in the import's append transactions.
create table legacy_import (
    id int not null primary key,
    conversation_id_high bigint not null,
    message_id_high bigint not null
) engine = innodb;
