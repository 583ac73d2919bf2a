-- A crashed run (its lease ran out with no outcome) is not the task's failure: it runs again,
-- up to the definition's `rescues` crashes in a row. Failures on their own are counted apart,
-- against `restarts`.
ALTER TABLE batchtask ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batchtask ADD COLUMN rescues INTEGER NOT NULL DEFAULT 0;
-- Until now every counted run that ended was a failure (a success ends the task): a New task
-- waiting for a retry has failed `attempts` times, a running one `attempts - 1`.
UPDATE batchtask SET failures = CASE WHEN state IN (2, 3) THEN max(attempts - 1, 0) ELSE attempts END;
ALTER TABLE batchtaskdefinition ADD COLUMN rescues INTEGER NOT NULL DEFAULT 3;
