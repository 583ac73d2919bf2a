-- Indexes for the OData list's filters and sort orders (GET /api/v1/BatchTask), so a filtered
-- or sorted page over 100,000 tasks stays well under 50 ms (docs/BENCHMARKS.md, "Formats").
-- State, name, associate and registeredDate have indexes already (0001). Text searches
-- (contains, begins) scan: a NOCASE index for begins made the planner prefer it over the id
-- order even when most rows match, which was slower than the scan it replaced.

-- updatedDate and LastStarted: range filters and sorts.
CREATE INDEX batchtask_updated ON batchtask (updated);
CREATE INDEX batchtask_laststarted ON batchtask (laststarted);
-- registeredBy eq / associateIsOneOf.
CREATE INDEX batchtask_registered_by ON batchtask (registered_associate_id);
