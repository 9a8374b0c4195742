-- The search projector now indexes every Chinese, Japanese and Korean character on its own (so a
-- one-character query is one exact lookup, not a range over every bigram it starts) and no longer
-- indexes single Latin letters or digits, which queries ignore. Rows written before are indexed
-- the old way: the index is emptied and its checkpoint set back to the log's start, and the
-- projector folds it again from the log (its checkpoint's compare-and-set makes a batch in flight
-- on another node fail and start over). Nothing but this disposable table changes.
truncate table search_terms;
update projector_state set position = 0 where name = 'search';
