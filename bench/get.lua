-- GET /api/v1/BatchTask/{id} over TASKS ids (default 32).
local counter = 0
local tasks = tonumber(os.getenv("TASKS") or "32")
local auth = os.getenv("AUTH")
local accept = os.getenv("ACCEPT") or "application/json"
request = function()
  counter = counter + 1
  return wrk.format("GET", "/api/v1/BatchTask/" .. ((counter % tasks) + 1), {
    ["Authorization"] = auth, ["Accept"] = accept })
end
