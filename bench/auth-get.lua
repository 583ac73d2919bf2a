-- wrk script: GET one task with the credentials in $BATCHD_AUTH (the whole Authorization value)
-- and, when set, $BATCHD_APPTOKEN as SO-AppToken. Used by bench/identity.sh.
wrk.method = "GET"
wrk.path = os.getenv("BATCHD_PATH") or "/api/v1/BatchTask/1"
wrk.headers["Authorization"] = os.getenv("BATCHD_AUTH")
wrk.headers["Accept"] = "application/json"
local app = os.getenv("BATCHD_APPTOKEN")
if app and app ~= "" then
  wrk.headers["SO-AppToken"] = app
end

-- Any non-200 would make the figures meaningless: count them and say so.
local bad = 0
function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
  if errors > 0 then
    io.stderr:write(string.format("WARNING: %d failed or non-2xx responses\n", errors))
  end
end
