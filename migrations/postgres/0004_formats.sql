-- Indexes for the OData list's filters and sort orders (GET /api/v1/BatchTask), the twins of
-- migrations/sqlite/0004_formats.sql. State, name, associate and registeredDate have indexes
-- already (0001).

-- updatedDate and LastStarted: range filters and sorts.
CREATE INDEX batchtask_updated ON batchtask (updated);
CREATE INDEX batchtask_laststarted ON batchtask (laststarted);
-- registeredBy eq / associateIsOneOf.
CREATE INDEX batchtask_registered_by ON batchtask (registered_associate_id);
