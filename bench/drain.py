#!/usr/bin/env python3
"""The SQLite drain of bench/runner.rs without building anything: TASKS Noop tasks created over
HTTP (CLIENTS at a time) on a server with the runner off, then a server with the runner on
(max_running MAX_RUNNING, claim_batch CLAIM_BATCH) drains them. Throughput = TASKS / (last finish
- first start), from the tasks' stored timestamps, as in bench/runner.rs's drain phase.

    BATCHD_BIN=target/release/batchd bench/drain.py          # TASKS=20000 CLIENTS=32 RUNS=1
    RUNS=3 BATCHD_BIN=/tmp/a bench/drain.py                   # three drains of the same binary

With PERF=1 the drain is recorded with `perf record -g` (perf.data in the scratch directory).
Loopback only; every wait is bounded."""
import base64, http.client, json, os, re, sqlite3, subprocess, sys, tempfile, threading, time

BIN = os.environ.get("BATCHD_BIN", "target/release/batchd")
TASKS = int(os.environ.get("TASKS", "20000"))
CLIENTS = int(os.environ.get("CLIENTS", "32"))
MAX_RUNNING = int(os.environ.get("MAX_RUNNING", "1024"))
CLAIM_BATCH = int(os.environ.get("CLAIM_BATCH", "512"))
RUNS = int(os.environ.get("RUNS", "1"))
AUTH = "Basic " + base64.b64encode(b"admin:pw").decode()


def start(db, enabled):
    cfg = db + ".toml"
    with open(cfg, "w") as f:
        f.write(f"[runner]\nenabled = {'true' if enabled else 'false'}\nmax_running = {MAX_RUNNING}\n"
                f"claim_batch = {CLAIM_BATCH}\n\n[retention]\nsucceeded = \"never\"\nfailed = \"never\"\n")
    env = dict(os.environ, BATCHD_LISTEN="127.0.0.1:0", BATCHD_DATABASE="sqlite:" + db, BATCHD_ADMIN_PASSWORD="pw",
               BATCHD_CONFIG=cfg, BATCHD_LOG="warn,batchd=info,batchd::request=warn,batchd::task=warn",
               BATCHD_LOG_FORMAT="pretty")
    p = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    for line in p.stderr:
        m = re.search(r"addr=(\S+)", line)
        if m:
            threading.Thread(target=lambda: [print("server:", l, end="", file=sys.stderr)
                                             for l in p.stderr if "ERROR" in l or "WARN" in l], daemon=True).start()
            return p, m.group(1)
        if time.time() > deadline:
            break
    p.kill()
    sys.exit("batchd did not print its address")


def create_many(addr, n):
    host, port = addr.rsplit(":", 1)
    left = [n]
    lock = threading.Lock()

    def client():
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            c.request("POST", "/api/v1/BatchTask", body=b'{"Name":"Noop"}',
                      headers={"Authorization": AUTH, "Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status

    # One request first: the credential is then cached (no 32 argon2 verifications at once).
    client_one = http.client.HTTPConnection(host, int(port), timeout=30)
    client_one.request("GET", "/api/v1/BatchTask/0", headers={"Authorization": AUTH})
    client_one.getresponse().read()
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    t = time.time()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.time() - t


def count(db, sql):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return c.execute(sql).fetchone()[0]
    finally:
        c.close()


def one(dir, i):
    db = os.path.join(dir, f"drain{i}.db")
    p, addr = start(db, False)
    took = create_many(addr, TASKS)
    p.terminate()
    p.wait(30)
    launched = time.time()
    p, _ = start(db, True)
    perf = None
    if os.environ.get("PERF") == "1":
        perf = subprocess.Popen(["perf", "record", *os.environ.get("PERF_ARGS", "-g").split(), "-o", os.path.join(dir, "perf.data"), "-p", str(p.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while count(db, "SELECT COUNT(*) FROM batchtask WHERE state = 4") < TASKS:
            assert time.time() < deadline, "drain timed out"
            time.sleep(0.01)
        done = time.time()
        cpu = [int(x) for x in open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()[11:13]]
    finally:
        if perf:
            perf.send_signal(2)
            perf.wait(60)
        p.terminate()
        p.wait(30)
    span = count(db, "SELECT MAX(updated) - MIN(laststarted) FROM batchtask") / 1e6
    print(f"create (runner off): {TASKS / took:.0f} creates/s; drain: {TASKS} tasks in {span:.3f} s "
          f"(first start to last finish) = {TASKS / span:.0f} tasks/s; {done - launched:.2f} s from launch; "
          f"server CPU {sum(cpu) / os.sysconf('SC_CLK_TCK'):.2f} s; load {open('/proc/loadavg').read().split()[0]}",
          flush=True)


def main():
    with tempfile.TemporaryDirectory(dir=os.environ.get("DRAIN_DIR")) as dir:
        print(f"drain benchmark: {BIN}, {TASKS} Noop tasks, max_running {MAX_RUNNING}, claim_batch {CLAIM_BATCH}; "
              f"load {open('/proc/loadavg').read().strip()}", flush=True)
        for i in range(RUNS):
            one(dir, i)
        if os.environ.get("PERF") == "1":
            subprocess.run(["cp", os.path.join(dir, "perf.data"), os.environ.get("PERF_OUT", "/tmp/perf.data")])


main()
