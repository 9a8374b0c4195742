-- MySQL's search index is already clustered by message (0005); SQLite's is made the same.
do 0;
