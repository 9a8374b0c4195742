-- Admin-wide searches walk a term's postings newest first and stop once they have enough
-- matches, instead of reading every posting of a common term.
create index search_terms_recent on search_terms (term, message_id, hits);
