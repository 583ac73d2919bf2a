-- GET /api/v1/BatchTask with a $filter, rotating through typical filtered, sorted list queries.
-- Over the 100,000 tasks bench/formats.sh seeds (names Task0..Task19, states 1..6).
local auth = os.getenv("AUTH")
local accept = os.getenv("ACCEPT") or "application/json"
local queries = {
  "$filter=State%20eq%204%20and%20DefinitionName%20eq%20'Task3'&$orderBy=registeredDate%20desc&$top=100",
  "$filter=registeredDate%20ge%20'2023-11-15'%20and%20registeredDate%20lt%20'2023-11-16'&$top=100",
  "$filter=DefinitionName%20begins%20'Task1'%20and%20StartCount%20gt%201&$top=100",
  "$filter=Description%20contains%20'99999'&$top=100",
  "$filter=State%20oneOf%20(4,5)%20and%20updatedDate%20ge%20'2023-11-16T01:00:00'&$orderBy=updatedDate%20desc&$top=100",
  "$filter=(State%20eq%205%20or%20State%20eq%206)%20and%20not%20DefinitionName%20eq%20'Task7'&$orderBy=Description&$top=100&$skip=500",
}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/api/v1/BatchTask?" .. queries[(counter % #queries) + 1], {
    ["Authorization"] = auth, ["Accept"] = accept })
end
