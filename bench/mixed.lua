-- Mixed API traffic for the soak (bench/soak.sh): of every 20 requests, 12 GET a task, 4 PUT a
-- Description, 3 create a Noop task (which the server's runner then runs), 1 lists Started tasks.
-- Ids 1..TASKS are the seed tasks; creates add more, which retention keeps.
local counter = 0
local tasks = tonumber(os.getenv("TASKS") or "32")
local auth = os.getenv("AUTH")
local json = { ["Authorization"] = auth, ["Content-Type"] = "application/json" }
request = function()
  counter = counter + 1
  local id = (counter % tasks) + 1
  local slot = counter % 20
  if slot < 12 then
    return wrk.format("GET", "/api/v1/BatchTask/" .. id, { ["Authorization"] = auth })
  elseif slot < 16 then
    return wrk.format("PUT", "/api/v1/BatchTask/" .. id, json, '{"Description":"soak ' .. counter .. '"}')
  elseif slot < 19 then
    return wrk.format("POST", "/api/v1/BatchTask", json, '{"Name":"Noop","Description":"soak"}')
  else
    return wrk.format("GET", "/api/v1/BatchTask/Started", { ["Authorization"] = auth })
  end
end
