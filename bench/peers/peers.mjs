// One system through the peer protocol of bench/peers.sh, on its own fresh database:
//   drain:   TASKS no-op jobs enqueued in batches of 1,000 with no worker, ANALYZE, a worker
//            started; jobs/s from the worker's start to the moment every job is completed
//            (the database polled every 5 ms).
//   latency: SAMPLES jobs enqueued one at a time with 5-25 ms gaps to the idle worker;
//            enqueue-to-start.
// Usage: node peers.mjs graphile|pgboss|batchd DATABASE_URL TASKS SAMPLES [BATCHD_BIN]
// Prints one JSON line with the figures and the settings used.
import { spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import { readFileSync } from "node:fs";
import pg from "pg";

const [system, url, tasksArg, samplesArg, batchdBin] = process.argv.slice(2);
// One transport for every system: node-postgres (graphile-worker's and pg-boss's driver, and this
// script's) connects without TLS unless told to, while batchd's driver tries TLS first (libpq's
// `prefer`) and this server offers it. PEERS_TLS=1 measures batchd over TLS instead.
const batchdUrl = process.env.PEERS_TLS === "1" ? url : url + (url.includes("?") ? "&" : "?") + "sslmode=disable";
const TASKS = Number(tasksArg);
const SAMPLES = Number(samplesArg);
const BATCH = 1000;
const LIMIT_MS = 600_000; // no phase may take longer than this
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const gap = () => sleep(5 + Math.random() * 20);
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.round((p / 100) * (s.length - 1)))];
};

const installed = (name) => JSON.parse(readFileSync(new URL(`node_modules/${name}/package.json`, import.meta.url))).version;

const db = new pg.Client({ connectionString: url });
await db.connect();
const count = async (sql) => Number((await db.query(sql)).rows[0].n);
async function waitUntil(pred, what) {
  const deadline = performance.now() + LIMIT_MS;
  while (!(await pred())) {
    if (performance.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(5);
  }
  return performance.now();
}
function summary(drainMs, latencies, extra) {
  return {
    system,
    tasks: TASKS,
    drain_per_s: Math.round(TASKS / (drainMs / 1000)),
    drain_s: +(drainMs / 1000).toFixed(3),
    samples: latencies.length,
    p50_ms: +pct(latencies, 50).toFixed(2),
    p99_ms: +pct(latencies, 99).toFixed(2),
    max_ms: +Math.max(...latencies).toFixed(2),
    ...extra,
  };
}

async function graphile() {
  const gw = await import("graphile-worker");
  const settings = { concurrentJobs: 24, maxPoolSize: 25, localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 };
  const preset = { worker: { connectionString: url, ...settings } };
  const quiet = new gw.Logger(() => (level, message) => level === "error" && console.error(message));
  await gw.runMigrations({ preset, logger: quiet });
  const utils = await gw.makeWorkerUtils({ preset, logger: quiet });
  for (let i = 0; i < TASKS; i += BATCH) {
    await utils.addJobs(Array.from({ length: Math.min(BATCH, TASKS - i) }, () => ({ identifier: "noop", payload: {} })));
  }
  await db.query("ANALYZE");
  const latencies = [];
  const taskList = {
    noop: async (payload) => {
      if (payload.t0 !== undefined) latencies.push(performance.now() - payload.t0);
    },
  };
  const jobs = "SELECT COUNT(*) AS n FROM graphile_worker._private_jobs";
  const started = performance.now();
  const runner = await gw.run({ preset, taskList, logger: quiet, noHandleSignals: true });
  const done = await waitUntil(async () => (await count(jobs)) === 0, "graphile drain");
  for (let i = 0; i < SAMPLES; i++) {
    await utils.addJob("noop", { t0: performance.now() });
    await gap();
  }
  await waitUntil(async () => latencies.length >= SAMPLES && (await count(jobs)) === 0, "graphile samples");
  await runner.stop();
  await utils.release();
  const version = installed("graphile-worker");
  return summary(done - started, latencies, { version, settings });
}

async function pgboss() {
  const { PgBoss } = await import("pg-boss");
  const boss = new PgBoss({ connectionString: url, max: 10, supervise: false, schedule: false });
  boss.on("error", (e) => console.error(e));
  await boss.start();
  const name = "noop";
  await boss.createQueue(name, { notify: true });
  for (let i = 0; i < TASKS; i += BATCH) {
    await boss.insert(name, Array.from({ length: Math.min(BATCH, TASKS - i) }, () => ({ data: {} })));
  }
  await db.query("ANALYZE");
  const latencies = [];
  const settings = { batchSize: 100, localConcurrency: 4, pollingIntervalSeconds: 0.5, burstWhenBatchFull: true, queue: { notify: true } };
  const { queue: _, ...workSettings } = settings;
  const open = "SELECT COUNT(*) AS n FROM pgboss.job WHERE name = 'noop' AND state <> 'completed'";
  const started = performance.now();
  await boss.work(name, workSettings, async (batch) => {
    for (const job of batch) if (job.data.t0 !== undefined) latencies.push(performance.now() - job.data.t0);
  });
  const done = await waitUntil(async () => (await count(open)) === 0, "pg-boss drain");
  for (let i = 0; i < SAMPLES; i++) {
    await boss.send(name, { t0: performance.now() });
    await gap();
  }
  await waitUntil(async () => latencies.length >= SAMPLES && (await count(open)) === 0, "pg-boss samples");
  await boss.stop({ graceful: false, wait: false });
  const version = installed("pg-boss");
  return summary(done - started, latencies, { version, settings });
}

// batchd: tasks created over HTTP (32 at a time) on a node with the runner off, that node
// stopped, ANALYZE, then a node with the runner on started; the drain runs from that
// process's launch. Latency is LastStarted - Created as stored, on the idle node.
async function batchd() {
  const port = 18830;
  const base = `http://127.0.0.1:${port}`;
  const auth = "Basic " + Buffer.from("admin:bench").toString("base64");
  const settings = { max_running: Number(process.env.PEERS_MAX_RUNNING ?? 2048), claim_batch: Number(process.env.PEERS_CLAIM_BATCH ?? 512) };
  const start = async (runner) => {
    const fs = await import("node:fs");
    const cfg = `/tmp/batchd-peers-${process.pid}-${runner}.toml`;
    fs.writeFileSync(cfg, `[runner]\nenabled = ${runner}\nmax_running = ${settings.max_running}\nclaim_batch = ${settings.claim_batch}\n\n[retention]\nsucceeded = "never"\nfailed = "never"\n`);
    const child = spawn(batchdBin, ["serve", "--listen", `127.0.0.1:${port}`, "--database", batchdUrl], {
      env: { ...process.env, BATCHD_CONFIG: cfg, BATCHD_ADMIN_PASSWORD: "bench", BATCHD_LOG: process.env.BATCHD_BENCH_LOG ?? "warn" },
      stdio: ["ignore", "ignore", "inherit"],
    });
    const exited = new Promise((r) => child.on("exit", r));
    return { child, stop: async () => (child.kill("SIGTERM"), await exited) };
  };
  const up = async () => {
    for (let i = 0; i < 300; i++) {
      try {
        if ((await fetch(`${base}/api`)).ok) return;
      } catch {}
      await sleep(20);
    }
    throw new Error("batchd did not answer");
  };
  const create = async (body) => {
    const res = await fetch(`${base}/api/v1/BatchTask`, {
      method: "POST",
      headers: { Authorization: auth, "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    if (res.status !== 200) throw new Error(`create: ${res.status} ${await res.text()}`);
    return res.json();
  };
  const off = await start(false);
  await up();
  for (let i = 0; i < TASKS; i += BATCH) {
    const n = Math.min(BATCH, TASKS - i);
    let next = 0;
    await Promise.all(Array.from({ length: 32 }, async () => { while (next++ < n) await create({ Name: "Noop" }); }));
  }
  await off.stop();
  await db.query("ANALYZE");
  // Done when no task is open (New, Aquired, Started), the question asked of the peers too
  // (graphile: no job row left; pg-boss: no job not completed). Counting the finished rows
  // instead read a growing index each poll, work the peers' observers did not have to do.
  const open = "SELECT COUNT(*) AS n FROM batchtask WHERE state IN (1, 2, 3)";
  const finished = "SELECT COUNT(*) AS n FROM batchtask WHERE state = 4";
  const launched = performance.now();
  const on = await start(true);
  const done = await waitUntil(async () => (await count(open)) === 0, "batchd drain");
  if ((await count(finished)) !== TASKS) throw new Error("batchd drain: not every task Completed");
  const span = (await db.query("SELECT EXTRACT(EPOCH FROM MAX(updated) - MIN(laststarted)) AS s FROM batchtask WHERE state = 4")).rows[0].s;
  await up();
  const ids = [];
  for (let i = 0; i < SAMPLES; i++) {
    ids.push(await create({ Name: "Noop" }));
    await gap();
  }
  await waitUntil(async () => (await count(finished)) >= TASKS + SAMPLES, "batchd samples");
  const rows = (await db.query("SELECT EXTRACT(EPOCH FROM laststarted - registered) * 1000 AS ms FROM batchtask WHERE batchtask_id = ANY($1)", [ids])).rows;
  await on.stop();
  return summary(done - launched, rows.map((r) => Number(r.ms)), {
    first_start_to_last_finish_per_s: Math.round(TASKS / Number(span)),
    settings: { ...settings, tls: process.env.PEERS_TLS === "1" },
  });
}

const run = { graphile, pgboss, batchd }[system];
if (!run) throw new Error(`unknown system ${system}`);
const timer = setTimeout(() => { console.error("peers.mjs: overall time limit"); process.exit(3); }, 3 * LIMIT_MS);
console.log(JSON.stringify(await run()));
clearTimeout(timer);
await db.end();
process.exit(0);
