-- Scheduling: a paused definition's tasks stay New (claims skip them) and its schedule creates
-- nothing. Kept in the database so that pausing outlives restarts.
ALTER TABLE batchtaskdefinition ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
