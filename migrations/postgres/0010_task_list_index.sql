-- The task list pages through ids newest first. PostgreSQL steps over the
-- skipped ids with an index-only scan of the primary key, which holds ids
-- alone, so it needs no index of its own (SQLite and MySQL do). Kept so the
-- three backends' migrations stay numbered alike.
SELECT 1;
