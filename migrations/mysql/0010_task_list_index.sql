-- The task list pages through ids newest first. Stepping over the skipped
-- ids of a page in the clustered index reads every skipped task's spec;
-- this index holds ids alone, so a page costs a few index pages and its
-- own rows.
CREATE INDEX dts_tasks_newest ON dts_tasks (id);
