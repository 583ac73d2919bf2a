-- PUT /api/v1/BatchTask/{id}: alternate the Description so every request is a real update.
-- Each wrk thread updates its own share of the ids 1..N (env TASKS, default 32), each of its
-- connections a different id at a time, to measure the durable-write path, not lock contention
-- on one row. SHARED=1 gives the variant measured before 2026-12-03 14:00, where every thread
-- cycled over all N ids in step with the others, so two requests often waited on one row.
local counter = 0
local tasks = tonumber(os.getenv("TASKS") or "32")
local auth = os.getenv("AUTH")
local ctype = os.getenv("CTYPE") or "application/json"
local shared = os.getenv("SHARED") == "1"
local threads = 0
local share, first = tasks, 0

function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end

-- THREADS: wrk's -t, exported by bench/lib.sh.
function init(args)
  local n = tonumber(os.getenv("THREADS") or "1")
  if not shared and n > 1 and tasks >= n then
    share = math.floor(tasks / n)
    first = index * share
  end
end

request = function()
  counter = counter + 1
  local id = first + (counter % share) + 1
  local body
  if ctype == "application/json" then
    body = '{"Description":"bench ' .. counter .. '","Response":"r"}'
  else
    body = '<BatchTaskInfo><Description>bench ' .. counter .. '</Description><Response>r</Response></BatchTaskInfo>'
  end
  return wrk.format("PUT", "/api/v1/BatchTask/" .. id, {
    ["Authorization"] = auth, ["Content-Type"] = ctype, ["Accept"] = ctype }, body)
end
