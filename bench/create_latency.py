#!/usr/bin/env python3
"""Serial `POST /api/v1/BatchTask` latency on SQLite (runner off, bench/drain.py's body), A/B:
each binary in turn, ROUNDS times alternated, a fresh database each run. One client, one
keep-alive connection: latency, not throughput. Also the server's CPU per create (utime+stime).

    A=/tmp/base B=target/release/batchd ROUNDS=3 N=2000 bench/create_latency.py

Loopback only; every wait is bounded."""
import base64, http.client, os, re, statistics, subprocess, sys, tempfile, time

BINS = {"A": os.environ["A"], "B": os.environ["B"]}
N = int(os.environ.get("N", "2000"))
WARM = int(os.environ.get("WARM", "200"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
AUTH = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode(), "Content-Type": "application/json"}


def start(bin, dir):
    cfg = os.path.join(dir, "b.toml")
    with open(cfg, "w") as f:
        f.write('[runner]\nenabled = false\n\n[retention]\nsucceeded = "never"\nfailed = "never"\n')
    env = dict(os.environ, BATCHD_LISTEN="127.0.0.1:0", BATCHD_DATABASE="sqlite:" + os.path.join(dir, "b.db"),
               BATCHD_ADMIN_PASSWORD="pw", BATCHD_CONFIG=cfg, BATCHD_LOG="warn,batchd=info,batchd::request=warn,batchd::task=warn",
               BATCHD_LOG_FORMAT="pretty")
    p = subprocess.Popen([bin, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    for line in p.stderr:
        m = re.search(r"addr=(\S+)", line)
        if m:
            return p, m.group(1)
        if time.time() > deadline:
            break
    p.kill()
    sys.exit("batchd did not print its address")


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def run(bin):
    with tempfile.TemporaryDirectory() as dir:
        p, addr = start(bin, dir)
        try:
            host, port = addr.rsplit(":", 1)
            c = http.client.HTTPConnection(host, int(port), timeout=30)

            def create():
                c.request("POST", "/api/v1/BatchTask", body=b'{"Name":"Noop"}', headers=AUTH)
                r = c.getresponse()
                r.read()
                assert r.status == 200, r.status

            for _ in range(WARM):
                create()
            lat, cpu0, t0 = [], cpu(p.pid), time.perf_counter()
            for _ in range(N):
                s = time.perf_counter()
                create()
                lat.append(time.perf_counter() - s)
            wall, used = time.perf_counter() - t0, cpu(p.pid) - cpu0
        finally:
            p.terminate()
            p.wait(30)
    lat.sort()
    return (f"mean {wall / N * 1e6:.0f} us, p50 {lat[N // 2] * 1e6:.0f} us, p90 {lat[N * 9 // 10] * 1e6:.0f} us, "
            f"p99 {lat[N * 99 // 100] * 1e6:.0f} us; server CPU {used / N * 1e6:.0f} us/create")


print(f"serial create latency: N={N} (after {WARM}), A={BINS['A']} B={BINS['B']}; load {open('/proc/loadavg').read().strip()}",
      flush=True)
for r in range(ROUNDS):
    for k in ("A", "B"):
        out = run(BINS[k])
        print(f"round {r + 1} {k}: {out}; load {open('/proc/loadavg').read().split()[0]}", flush=True)
