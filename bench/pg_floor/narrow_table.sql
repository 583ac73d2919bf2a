-- A narrow runner table: the columns a claim and a finish write, with the indexes the runner needs.
SET client_min_messages = warning;
DROP TABLE IF EXISTS run_narrow;
CREATE TABLE run_narrow (batchtask_id int PRIMARY KEY, name text COLLATE "C" NOT NULL, state int NOT NULL, priority smallint NOT NULL DEFAULT 0, waiting_on int NOT NULL DEFAULT 0, run_after timestamptz, startcount int NOT NULL DEFAULT 0, laststarted timestamptz, updated timestamptz NOT NULL, updatedcount bigint NOT NULL DEFAULT 0, lease_token text, lease_expires timestamptz, lease_node text, attempts int NOT NULL DEFAULT 0, result text, progresspercent smallint);
CREATE INDEX run_narrow_claim ON run_narrow (name, priority DESC, batchtask_id) WHERE state = 1 AND waiting_on = 0;
CREATE INDEX run_narrow_state ON run_narrow (state, batchtask_id);
CREATE INDEX run_narrow_lease ON run_narrow (lease_expires) WHERE lease_expires IS NOT NULL;
CREATE INDEX run_narrow_finished ON run_narrow (state, updated) WHERE state IN (4, 5, 6);
INSERT INTO run_narrow (batchtask_id, name, state, updated) SELECT batchtask_id, name, 1, now() FROM batchtask;
VACUUM ANALYZE run_narrow;
