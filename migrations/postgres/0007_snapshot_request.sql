-- An on-demand snapshot asked of the task (JSON: id, tables, where); NULL
-- for none. Its worker adds the tables to the copy it runs.
ALTER TABLE dts_tasks ADD COLUMN snapshot_request TEXT;
