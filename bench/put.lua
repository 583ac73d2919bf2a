-- PUT /api/v1/BatchTask/{id}: alternate the Description so every request is a real update.
-- Each connection updates its own task (ids 1..N from env TASKS, default 32) to measure the
-- durable-write path, not lock contention on one row.
local counter = 0
local tasks = tonumber(os.getenv("TASKS") or "32")
local auth = os.getenv("AUTH")
local ctype = os.getenv("CTYPE") or "application/json"
request = function()
  counter = counter + 1
  local id = (counter % tasks) + 1
  local body
  if ctype == "application/json" then
    body = '{"Description":"bench ' .. counter .. '","Response":"r"}'
  else
    body = '<BatchTaskInfo><Description>bench ' .. counter .. '</Description><Response>r</Response></BatchTaskInfo>'
  end
  return wrk.format("PUT", "/api/v1/BatchTask/" .. id, {
    ["Authorization"] = auth, ["Content-Type"] = ctype, ["Accept"] = ctype }, body)
end
