// Compatibility test: drives every BatchAgent method of the official SuperOffice
// TypeScript client (@superoffice/webapi, pinned in package.json) against a running
// batchd and checks what the client parses. See FINDINGS.md for how the client works.
//
//   BATCHD_URL       server root, e.g. http://127.0.0.1:8080 (API at BATCHD_URL/api/v1/)
//   BATCHD_USER      associate name (Basic auth); should have the admin role
//   BATCHD_PASSWORD  its password
//   BATCHD_NO_ADMIN  set to 1 when BATCHD_USER is not an admin: skips the system-task checks
//   BATCHD_KEEP      set to 1 to leave the tasks of a failed run in place for inspection
//
// Run: npm ci && BATCHD_URL=... BATCHD_USER=... BATCHD_PASSWORD=... node batch_agent.mjs
// Prints one line per check; exits 1 on the first failure (with the last HTTP exchanges),
// 2 on a usage error.

import assert from "node:assert/strict";
import { createRequire } from "node:module";

// The package's ESM build (dist/esm) cannot be loaded by Node (extension-less relative
// imports), so load the CommonJS build, as every Node user of the package must.
const require = createRequire(import.meta.url);
const {
  BatchAgent,
  BatchTaskState,
  BatchTaskCancellationBehaviour,
  ETableRight,
  EFieldRight,
} = require("@superoffice/webapi");

const BASE = (process.env.BATCHD_URL || "").replace(/\/+$/, "");
const USER = process.env.BATCHD_USER;
const PASSWORD = process.env.BATCHD_PASSWORD ?? "";
const ADMIN = process.env.BATCHD_NO_ADMIN !== "1";
const KEEP = process.env.BATCHD_KEEP === "1";
if (!BASE || !USER) {
  console.error("usage: BATCHD_URL=http://host:port BATCHD_USER=name BATCHD_PASSWORD=pw node batch_agent.mjs");
  process.exit(2);
}
const AGENT_PATH = "/api/v1/Agents/Batch/";

// ---------------------------------------------------------------------------
// Recording of HTTP exchanges (for failure context and wire-level checks)

const exchanges = [];

function record(agent) {
  agent._axios.interceptors.request.use((config) => {
    exchanges.push({
      request: {
        method: (config.method || "").toUpperCase(),
        url: new URL(config.url, config.baseURL).href,
        headers: headersOf(config.headers),
        body: config.data === undefined ? undefined : structuredClone(config.data),
      },
      response: null,
    });
    if (exchanges.length > 50) exchanges.shift();
    return config;
  });
  const onResponse = (response) => {
    const ex = exchanges[exchanges.length - 1];
    // clone: the client's converters mutate response.data.FieldProperties in place
    if (ex) ex.response = {
      status: response.status,
      headers: headersOf(response.headers),
      body: structuredClone(response.data),
    };
  };
  agent._axios.interceptors.response.use(
    (response) => { onResponse(response); return response; },
    (error) => {
      if (error && error.response) onResponse(error.response);
      else if (exchanges.length) exchanges[exchanges.length - 1].response = { error: String(error) };
      return Promise.reject(error);
    },
  );
  return agent;
}

function headersOf(h) {
  const plain = h && typeof h.toJSON === "function" ? h.toJSON() : { ...(h || {}) };
  for (const k of Object.keys(plain)) if (/^authorization$/i.test(k)) plain[k] = "<redacted>";
  return plain;
}

const last = () => exchanges[exchanges.length - 1];

// ---------------------------------------------------------------------------
// Check runner

let checkNo = 0;
const created = new Set();

async function check(description, fn) {
  checkNo += 1;
  const before = exchanges.length;
  try {
    const note = await fn();
    console.log(`ok ${checkNo} - ${description}${note ? ` (${note})` : ""}`);
  } catch (err) {
    console.log(`not ok ${checkNo} - ${description}`);
    console.log(indent(err && err.stack ? err.stack : String(err)));
    if (err && err.response) {
      console.log(indent(`HTTP ${err.response.status}: ${JSON.stringify(err.response.data)}`));
    }
    // the exchanges of this check (the last 4), else the last one before it
    const shown = exchanges.length > before ? exchanges.slice(Math.max(before, exchanges.length - 4)) : exchanges.slice(-1);
    for (const ex of shown) {
      console.log(indent(`>>> ${ex.request.method} ${ex.request.url}`));
      console.log(indent(`    headers ${JSON.stringify(ex.request.headers)}`));
      if (ex.request.body !== undefined) console.log(indent(`    body    ${JSON.stringify(ex.request.body)}`));
      if (ex.response) {
        console.log(indent(`<<< ${ex.response.status ?? ""} ${ex.response.error ?? ""}`));
        if (ex.response.headers) console.log(indent(`    headers ${JSON.stringify(ex.response.headers)}`));
        if ("body" in ex.response) console.log(indent(`    body    ${JSON.stringify(ex.response.body)}`));
      }
    }
    await cleanup();
    process.exit(1);
  }
}

function indent(s) {
  return String(s).split("\n").map((l) => "    # " + l).join("\n");
}

async function cleanup() {
  if (KEEP || created.size === 0) return;
  const ids = [...created];
  for (const id of ids) {
    try { await agent.stopBatchJobAsync(id); } catch { /* best effort */ }
  }
  try { await agent.deleteBatchTasksAsync(ids); } catch { /* best effort */ }
}

// ---------------------------------------------------------------------------
// Helpers for assertions

function assertAgentCall(method) {
  const ex = last();
  assert.ok(ex, "no HTTP exchange was recorded");
  assert.equal(ex.request.method, "POST");
  const path = new URL(ex.request.url).pathname;
  assert.ok(path.endsWith(AGENT_PATH + method), `client posted to ${path}, expected .../api/v1/Agents/Batch/${method}`);
}

function assertValidDate(value, what) {
  assert.ok(value instanceof Date, `${what} should be parsed to a Date, got ${value}`);
  assert.ok(!Number.isNaN(value.getTime()), `${what} is an invalid Date`);
}

// RFC 3339 with explicit offset, 0-7 fractional digits (docs/API.md)
const WIRE_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?[+-]\d{2}:\d{2}$/;

const PROPERTIES = [
  "Id", "Name", "AssociateId", "DetailsTable", "DetailsRecord", "IsSystemTask", "IsInternalTask",
  "ParameterObject", "LastStarted", "Created", "StartCount", "DatabaseSerialNumber", "Context", "Result",
  "State", "Description", "Response", "Request", "ProgressDescription", "ProgressPercent", "FileName",
  "CancellationBehaviour",
];
const UPDATABLE = new Set(["State", "Description", "Response", "Request"]);

// FieldProperties keys are passed through by the client untouched; find them ignoring case.
function fieldProperty(info, name) {
  const fp = info.fieldProperties || {};
  const key = Object.keys(fp).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : fp[key];
}

const ids = (list) => list.map((t) => t.id);

function assertTaskList(list, what) {
  assert.ok(Array.isArray(list), `${what}: expected an array, got ${typeof list}`);
  for (const t of list) {
    assert.ok(t && typeof t === "object", `${what}: element is ${t}`);
    assert.equal(typeof t.id, "number", `${what}: element without numeric id`);
    assert.ok(Object.values(BatchTaskState).includes(t.state), `${what}: task ${t.id} has unparsed state ${t.state}`);
    assertValidDate(t.created, `${what}: task ${t.id} created`);
  }
}

function assertIncludes(list, id, what) {
  assert.ok(ids(list).includes(id), `${what}: task ${id} missing from [${ids(list)}]`);
}

function assertExcludes(list, id, what) {
  assert.ok(!ids(list).includes(id), `${what}: task ${id} should not be in [${ids(list)}]`);
}

// ---------------------------------------------------------------------------
// The test

// The client's documented way to configure an agent directly: base URL + axios config.
// proxy: false keeps HTTP(S)_PROXY from the environment away from a local server.
const agent = record(new BatchAgent(BASE, { auth: { username: USER, password: PASSWORD }, proxy: false }));
const runTag = `compat-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
const nameA = runTag;            // user task, driven New -> Started -> Succeeded
const nameB = `${runTag}-b`;     // user task, stopped while New
const nameC = `${runTag}-sys`;   // system task (admin only)
const params = { alpha: "1", beta: "two words", "gamma-key": "" };
const UNKNOWN_ID = 2147480000;

console.log(`# batchd compat test, @superoffice/webapi BatchAgent -> ${BASE}${AGENT_PATH}`);
console.log(`# task name prefix ${runTag}`);

let idA, idB, idC, infoA, rawA, me;

// --- StartBatchJob ---------------------------------------------------------

await check("startBatchJobAsync creates a task and answers its id as a number", async () => {
  idA = await agent.startBatchJobAsync({
    name: nameA,
    description: "created by the compat test",
    context: "ctx-1",
    request: "req-1",
    parameterObject: params,
    cancellationBehaviour: BatchTaskCancellationBehaviour.CanCancel,
    // server-owned properties: must be ignored on create
    id: 999999,
    state: BatchTaskState.Succeeded,
    startCount: 42,
    response: "not yours",
  });
  assertAgentCall("StartBatchJob");
  assert.equal(typeof idA, "number", `expected a bare JSON integer, got ${JSON.stringify(idA)}`);
  assert.ok(Number.isInteger(idA) && idA > 0 && idA !== 999999, `bad id ${idA}`);
  created.add(idA);
  assert.equal(last().response.status, 200);
  return `id=${idA}`;
});

// --- GetBatchTaskInfo --------------------------------------------------------

await check("getBatchTaskInfoAsync answers all 24 PascalCase properties on the wire", async () => {
  infoA = await agent.getBatchTaskInfoAsync(idA);
  assertAgentCall("GetBatchTaskInfo");
  const raw = (rawA = last().response.body);
  assert.ok(raw && typeof raw === "object", "response body is not an object");
  for (const p of [...PROPERTIES, "TableRight", "FieldProperties"]) {
    assert.ok(Object.hasOwn(raw, p), `property ${p} missing from the response`);
  }
  assert.equal(raw.State, "New", "State must be an enum name");
  assert.equal(typeof raw.CancellationBehaviour, "string", "CancellationBehaviour must be an enum name");
  assert.match(raw.Created, WIRE_DATE, "Created must be RFC 3339 with an explicit offset");
  assert.equal(typeof raw.TableRight.Mask, "string", "TableRight.Mask must be a string of flag names");
});

await check("getBatchTaskInfoAsync: identity, state New, server-owned fields ignored on create", async () => {
  assert.ok(infoA, `expected a BatchTaskInfo, got ${infoA}`);
  assert.equal(infoA.id, idA);
  assert.equal(infoA.name, nameA);
  assert.equal(infoA.state, BatchTaskState.New);
  assert.equal(infoA.startCount, 0);
  assert.equal(infoA.lastStarted, null);
  assert.equal(infoA.response, null);
  assert.equal(infoA.result, null);
  assert.equal(infoA.isSystemTask, false);
  assert.equal(infoA.isInternalTask, false);
  assert.equal(infoA.cancellationBehaviour, BatchTaskCancellationBehaviour.CanCancel);
  assert.ok(Number.isInteger(infoA.associateId) && infoA.associateId > 0, `user task AssociateId ${infoA.associateId}`);
  me = infoA.associateId;
  return `associateId=${me}`;
});

await check("getBatchTaskInfoAsync: description, context, request and parameterObject round-trip", async () => {
  assert.equal(infoA.description, "created by the compat test");
  assert.equal(infoA.context, "ctx-1");
  assert.equal(infoA.request, "req-1");
  assert.deepEqual({ ...infoA.parameterObject }, params);
  assert.equal(infoA.progressPercent, 0);
  assert.ok(infoA.detailsTable > 0 && infoA.detailsRecord > 0,
    `DetailsTable/DetailsRecord should point at the ParameterObject blob (${infoA.detailsTable}/${infoA.detailsRecord})`);
});

await check("getBatchTaskInfoAsync: created parses to a valid Date close to now", async () => {
  assertValidDate(infoA.created, "created");
  const skew = Math.abs(Date.now() - infoA.created.getTime());
  assert.ok(skew < 10 * 60 * 1000, `created ${infoA.created.toISOString()} is ${skew} ms away from now`);
  return infoA.created.toISOString();
});

await check("getBatchTaskInfoAsync: tableRight mask parses to Select|Update|Delete", async () => {
  const raw = rawA.TableRight.Mask;
  for (const flag of raw.split(/,\s*/)) {
    assert.ok(flag in ETableRight && typeof ETableRight[flag] === "number", `unknown ETableRight name "${flag}" in "${raw}"`);
  }
  const mask = infoA.tableRight && infoA.tableRight.mask;
  assert.equal(typeof mask, "number", `tableRight.mask = ${mask}`);
  for (const f of ["Select", "Update", "Delete"]) {
    assert.ok(mask & ETableRight[f], `tableRight.mask ${mask} ("${raw}") lacks ${f}`);
  }
  assert.equal(typeof infoA.tableRight.reason, "string");
  return `"${raw}" -> ${mask}`;
});

await check("getBatchTaskInfoAsync: fieldProperties parse; only State/Description/Response/Request are Update", async () => {
  assert.ok(infoA.fieldProperties && typeof infoA.fieldProperties === "object", "fieldProperties missing");
  for (const p of PROPERTIES) {
    const fp = fieldProperty(infoA, p);
    assert.ok(fp, `fieldProperties has no entry for ${p}`);
    assert.ok(fp.fieldRight, `fieldProperties.${p}.fieldRight is ${fp.fieldRight}`);
    const want = UPDATABLE.has(p) ? EFieldRight.Update : EFieldRight.Read;
    assert.equal(fp.fieldRight.mask, want, `fieldProperties.${p}.fieldRight.mask = ${fp.fieldRight.mask}, want ${EFieldRight[want]}`);
    assert.equal(typeof fp.fieldType, "string");
    assert.equal(typeof fp.fieldLength, "number");
  }
  assert.equal(fieldProperty(infoA, "Id").fieldType, "System.Int32");
  assert.equal(fieldProperty(infoA, "Name").fieldType, "System.String");
  assert.equal(fieldProperty(infoA, "Created").fieldType, "System.DateTime");
  assert.equal(fieldProperty(infoA, "IsSystemTask").fieldType, "System.Boolean");
  assert.equal(fieldProperty(infoA, "Name").fieldLength, 254);
  assert.equal(fieldProperty(infoA, "Description").fieldLength, 254);
  assert.equal(fieldProperty(infoA, "FileName").fieldLength, 260);
});

await check("getBatchTaskInfoAsync with SO-Timezone Europe/Oslo: same instant, Oslo offset on the wire", async () => {
  const oslo = await agent.getBatchTaskInfoAsync(idA, { timezone: "Europe/Oslo" });
  const raw = last().response.body.Created;
  assert.match(raw, /[+]0[12]:00$/, `Created ${raw} should carry the Oslo offset`);
  assertValidDate(oslo.created, "created");
  assert.equal(oslo.created.getTime(), infoA.created.getTime());
  return raw;
});

await check("getBatchTaskInfoAsync of an unknown id gives null", async () => {
  const none = await agent.getBatchTaskInfoAsync(UNKNOWN_ID);
  assertAgentCall("GetBatchTaskInfo");
  assert.equal(last().response.status, 200);
  assert.equal(none, null);
});

await check("a wrong password is rejected with 401 (the client rejects with the HTTP error)", async () => {
  const bad = record(new BatchAgent(BASE, { auth: { username: USER, password: PASSWORD + "-wrong" }, proxy: false }));
  const err = await bad.getBatchTaskInfoAsync(idA).then(
    (v) => assert.fail(`expected a rejection, got ${JSON.stringify(v)}`),
    (e) => e,
  );
  assert.equal(err.response && err.response.status, 401);
});

// --- UpdateBatchTask ---------------------------------------------------------

await check("updateBatchTaskAsync (the parsed object sent back) changes description and moves New -> Started", async () => {
  const body = { ...infoA, description: "updated by the compat test", state: BatchTaskState.Started, context: "ignored" };
  const upd = await agent.updateBatchTaskAsync(body);
  assertAgentCall("UpdateBatchTask");
  assert.equal(upd.id, idA);
  assert.equal(upd.description, "updated by the compat test");
  assert.equal(upd.state, BatchTaskState.Started);
  assert.equal(upd.startCount, 1);
  assertValidDate(upd.lastStarted, "lastStarted");
  assert.ok(upd.lastStarted.getTime() >= infoA.created.getTime() - 1000, "lastStarted before created");
  assert.equal(upd.context, "ctx-1", "Context is not updatable and must be ignored");
  assert.equal(upd.name, nameA);
  infoA = upd;
});

await check("updateBatchTaskAsync moves Started -> Succeeded and sets response", async () => {
  const upd = await agent.updateBatchTaskAsync({ id: idA, state: BatchTaskState.Succeeded, response: "done" });
  assert.equal(upd.state, BatchTaskState.Succeeded);
  assert.equal(upd.response, "done");
  assert.equal(upd.startCount, 1);
  assert.equal(upd.description, "updated by the compat test", "an absent property must stay as it is");
  const again = await agent.getBatchTaskInfoAsync(idA);
  assert.equal(again.state, BatchTaskState.Succeeded);
  assert.equal(again.response, "done");
  infoA = again;
});

await check("updateBatchTaskAsync with a forbidden move (Succeeded -> Aquired) rejects with 409", async () => {
  const err = await agent.updateBatchTaskAsync({ id: idA, state: BatchTaskState.Aquired }).then(
    (v) => assert.fail(`expected a rejection, got ${JSON.stringify(v)}`),
    (e) => e,
  );
  assert.equal(err.response && err.response.status, 409);
  assert.equal(err.response.data.ErrorType, "SoConflictException");
  const msg = err.response.data.ErrorMessage || err.response.data.Message || "";
  assert.ok(msg.includes("Succeeded") && msg.includes("Aquired"), `message should name both states: ${msg}`);
  assert.equal((await agent.getBatchTaskInfoAsync(idA)).state, BatchTaskState.Succeeded);
});

// --- More tasks for the queries ---------------------------------------------

await check("startBatchJobAsync creates a second user task (stays New)", async () => {
  idB = await agent.startBatchJobAsync({ name: nameB, description: "second" });
  assert.ok(Number.isInteger(idB) && idB > 0 && idB !== idA, `bad id ${idB}`);
  created.add(idB);
  const b = await agent.getBatchTaskInfoAsync(idB);
  assert.equal(b.state, BatchTaskState.New);
  assert.equal(b.associateId, me);
  assert.equal(b.parameterObject, null, "no ParameterObject was sent");
  return `id=${idB}`;
});

if (ADMIN) {
  await check("startBatchJobAsync creates a system task (AssociateId 0) for the admin", async () => {
    idC = await agent.startBatchJobAsync({ name: nameC, isSystemTask: true });
    assert.ok(Number.isInteger(idC) && idC > 0, `bad id ${idC}`);
    created.add(idC);
    const c = await agent.getBatchTaskInfoAsync(idC);
    assert.equal(c.isSystemTask, true);
    assert.equal(c.associateId, 0);
    assert.equal(c.state, BatchTaskState.New);
    return `id=${idC}`;
  });
}

// --- Queries -------------------------------------------------------------------

await check("getBatchTaskInfosByStateAsync(Succeeded / New / All) finds the right user tasks", async () => {
  const succeeded = await agent.getBatchTaskInfosByStateAsync(BatchTaskState.Succeeded);
  assertAgentCall("GetBatchTaskInfosByState");
  assertTaskList(succeeded, "ByState(Succeeded)");
  assert.ok(succeeded.every((t) => t.state === BatchTaskState.Succeeded), "a task in another state was returned");
  assertIncludes(succeeded, idA, "ByState(Succeeded)");
  assertExcludes(succeeded, idB, "ByState(Succeeded)");
  const fresh = await agent.getBatchTaskInfosByStateAsync(BatchTaskState.New);
  assertTaskList(fresh, "ByState(New)");
  assertIncludes(fresh, idB, "ByState(New)");
  assertExcludes(fresh, idA, "ByState(New)");
  const all = await agent.getBatchTaskInfosByStateAsync(BatchTaskState.All);
  assertTaskList(all, "ByState(All)");
  assertIncludes(all, idA, "ByState(All)");
  assertIncludes(all, idB, "ByState(All)");
  assert.ok(all.every((t) => !t.isSystemTask), "ByState must exclude system tasks");
  if (idC) assertExcludes(all, idC, "ByState(All) (system task)");
  return `${all.length} user tasks in all states`;
});

await check("getBatchTaskInfosByNameAndStateAsync matches name and state", async () => {
  const hit = await agent.getBatchTaskInfosByNameAndStateAsync(nameA, BatchTaskState.Succeeded);
  assertAgentCall("GetBatchTaskInfosByNameAndState");
  assertTaskList(hit, "ByNameAndState");
  assert.deepEqual(ids(hit), [idA]);
  assert.deepEqual(ids(await agent.getBatchTaskInfosByNameAndStateAsync(nameA, BatchTaskState.New)), []);
  assert.deepEqual(ids(await agent.getBatchTaskInfosByNameAndStateAsync(nameB, BatchTaskState.All)), [idB]);
  if (idC) assert.deepEqual(ids(await agent.getBatchTaskInfosByNameAndStateAsync(nameC, BatchTaskState.All)), [], "system task must be excluded");
});

await check("getBatchTaskInfosByAssociatesAsync: [me], [-1], [0], []", async () => {
  const mine = await agent.getBatchTaskInfosByAssociatesAsync([me]);
  assertAgentCall("GetBatchTaskInfosByAssociates");
  assertTaskList(mine, "ByAssociates([me])");
  assertIncludes(mine, idA, "ByAssociates([me])");
  assertIncludes(mine, idB, "ByAssociates([me])");
  assert.ok(mine.every((t) => t.associateId === me), "a task of another associate was returned");
  const users = await agent.getBatchTaskInfosByAssociatesAsync([-1]);
  assertTaskList(users, "ByAssociates([-1])");
  assertIncludes(users, idA, "ByAssociates([-1])");
  assert.ok(users.every((t) => !t.isSystemTask), "[-1] must not return system tasks");
  const system = await agent.getBatchTaskInfosByAssociatesAsync([0]);
  assertTaskList(system, "ByAssociates([0])");
  assertExcludes(system, idA, "ByAssociates([0])");
  assert.ok(system.every((t) => t.isSystemTask && t.associateId === 0), "[0] must return only system tasks");
  if (idC) assertIncludes(system, idC, "ByAssociates([0])");
  const every = await agent.getBatchTaskInfosByAssociatesAsync([]);
  assertTaskList(every, "ByAssociates([])");
  assertIncludes(every, idA, "ByAssociates([])");
  assertIncludes(every, idB, "ByAssociates([])");
  if (idC) assertIncludes(every, idC, "ByAssociates([])");
});

await check("getBatchTaskInfosByAssociatesAndStateAsync filters on associates and state", async () => {
  const hit = await agent.getBatchTaskInfosByAssociatesAndStateAsync([me], BatchTaskState.Succeeded);
  assertAgentCall("GetBatchTaskInfosByAssociatesAndState");
  assertTaskList(hit, "ByAssociatesAndState");
  assertIncludes(hit, idA, "ByAssociatesAndState([me], Succeeded)");
  assertExcludes(hit, idB, "ByAssociatesAndState([me], Succeeded)");
  assert.ok(hit.every((t) => t.state === BatchTaskState.Succeeded && t.associateId === me));
  const sys = await agent.getBatchTaskInfosByAssociatesAndStateAsync([0], BatchTaskState.All);
  assertExcludes(sys, idA, "ByAssociatesAndState([0], All)");
  assertExcludes(sys, idB, "ByAssociatesAndState([0], All)");
  if (idC) assertIncludes(sys, idC, "ByAssociatesAndState([0], All)");
});

await check("getBatchTaskInfosByNameAndAssociatesAsync filters on name and associates", async () => {
  const hit = await agent.getBatchTaskInfosByNameAndAssociatesAsync(nameA, [me]);
  assertAgentCall("GetBatchTaskInfosByNameAndAssociates");
  assertTaskList(hit, "ByNameAndAssociates");
  assert.deepEqual(ids(hit), [idA]);
  assert.deepEqual(ids(await agent.getBatchTaskInfosByNameAndAssociatesAsync(nameA, [])), [idA]);
  assert.deepEqual(ids(await agent.getBatchTaskInfosByNameAndAssociatesAsync(nameA, [0])), []);
  if (idC) assert.deepEqual(ids(await agent.getBatchTaskInfosByNameAndAssociatesAsync(nameC, [0])), [idC]);
});

await check("getAllBatchTaskInfosByNameAsync returns user and system tasks of that name", async () => {
  const hit = await agent.getAllBatchTaskInfosByNameAsync(nameA);
  assertAgentCall("GetAllBatchTaskInfosByName");
  assertTaskList(hit, "GetAllByName");
  assert.deepEqual(ids(hit), [idA]);
  assert.equal(hit[0].state, BatchTaskState.Succeeded);
  assert.equal(hit[0].response, "done");
  if (idC) assert.deepEqual(ids(await agent.getAllBatchTaskInfosByNameAsync(nameC)), [idC]);
});

await check("getAllBatchTaskInfosByNameAndStateAsync filters on name and state", async () => {
  const hit = await agent.getAllBatchTaskInfosByNameAndStateAsync(nameA, BatchTaskState.Succeeded);
  assertAgentCall("GetAllBatchTaskInfosByNameAndState");
  assertTaskList(hit, "GetAllByNameAndState");
  assert.deepEqual(ids(hit), [idA]);
  assert.deepEqual(ids(await agent.getAllBatchTaskInfosByNameAndStateAsync(nameA, BatchTaskState.Failed)), []);
  if (idC) assert.deepEqual(ids(await agent.getAllBatchTaskInfosByNameAndStateAsync(nameC, BatchTaskState.New)), [idC]);
});

await check("getSystemBatchTaskInfosByNameAsync returns only system tasks", async () => {
  const none = await agent.getSystemBatchTaskInfosByNameAsync(nameA);
  assertAgentCall("GetSystemBatchTaskInfosByName");
  assertTaskList(none, "GetSystemByName");
  assert.deepEqual(ids(none), [], "a user task was returned");
  if (idC) {
    const hit = await agent.getSystemBatchTaskInfosByNameAsync(nameC);
    assert.deepEqual(ids(hit), [idC]);
    assert.equal(hit[0].isSystemTask, true);
  }
});

await check("getSystemBatchTaskInfosByNameAndStateAsync filters system tasks on name and state", async () => {
  const none = await agent.getSystemBatchTaskInfosByNameAndStateAsync(nameA, BatchTaskState.All);
  assertAgentCall("GetSystemBatchTaskInfosByNameAndState");
  assertTaskList(none, "GetSystemByNameAndState");
  assert.deepEqual(ids(none), []);
  if (idC) {
    assert.deepEqual(ids(await agent.getSystemBatchTaskInfosByNameAndStateAsync(nameC, BatchTaskState.New)), [idC]);
    assert.deepEqual(ids(await agent.getSystemBatchTaskInfosByNameAndStateAsync(nameC, BatchTaskState.Succeeded)), []);
  }
});

// --- StopBatchJob ----------------------------------------------------------------

await check("stopBatchJobAsync on a New task answers true and the task becomes Failed", async () => {
  const stopped = await agent.stopBatchJobAsync(idB);
  assertAgentCall("StopBatchJob");
  assert.equal(stopped, true, `expected a bare JSON true, got ${JSON.stringify(stopped)}`);
  assert.equal((await agent.getBatchTaskInfoAsync(idB)).state, BatchTaskState.Failed);
});

await check("stopBatchJobAsync on finished tasks and an unknown id answers false", async () => {
  assert.equal(await agent.stopBatchJobAsync(idA), false, "Succeeded task");
  assert.equal((await agent.getBatchTaskInfoAsync(idA)).state, BatchTaskState.Succeeded);
  assert.equal(await agent.stopBatchJobAsync(idB), false, "Failed task");
  assert.equal(await agent.stopBatchJobAsync(UNKNOWN_ID), false, "unknown id");
  assert.equal(last().response.status, 200);
});

// --- DeleteBatchTask(s) --------------------------------------------------------------

await check("deleteBatchTaskAsync removes the task (204); getBatchTaskInfoAsync then gives null", async () => {
  const res = await agent.deleteBatchTaskAsync(idA);
  assertAgentCall("DeleteBatchTask");
  assert.equal(last().response.status, 204);
  assert.ok(res === undefined || res === null || res === "", `unexpected body ${JSON.stringify(res)}`);
  created.delete(idA);
  assert.equal(await agent.getBatchTaskInfoAsync(idA), null);
  assert.deepEqual(ids(await agent.getAllBatchTaskInfosByNameAsync(nameA)), []);
});

await check("deleteBatchTasksAsync removes several tasks (204)", async () => {
  const victims = [idB, ...(idC ? [idC] : [])];
  await agent.deleteBatchTasksAsync(victims);
  assertAgentCall("DeleteBatchTasks");
  assert.equal(last().response.status, 204);
  for (const id of victims) {
    created.delete(id);
    assert.equal(await agent.getBatchTaskInfoAsync(id), null, `task ${id} still there`);
  }
  assert.deepEqual(ids(await agent.getBatchTaskInfosByNameAndAssociatesAsync(nameB, [])), []);
});

console.log(`# all ${checkNo} checks passed`);
