-- An erasure forgets a conversation's search terms: found through this index, not by reading the
-- whole index of every conversation (which also held a lock on every row it read).
create index search_terms_conversation on search_terms (conversation_id, message_id);
