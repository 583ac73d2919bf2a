"""Per-request figures from a callgrind dump of N requests (bench/create_instructions.sh,
bench/put_instructions.sh): instructions per request, and the SQLite and sync calls per request
(sqlite3_step: statements run; fdatasync: durable commits).

Usage: python3 bench/callgrind_per_request.py DUMP N BINARY CLIENTS WHAT
"""
import re
import sys

path, n, binary, clients, what = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
total, calls, cfn, names = 0, {}, None, {}
for line in open(path, errors="replace"):
    if line.startswith("summary:") or line.startswith("totals:"):
        total = int(line.split()[1])
    m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3).strip()
        if m.group(1):
            cfn = names.get(m.group(2))
    elif line.startswith("calls=") and cfn:
        calls[cfn] = calls.get(cfn, 0) + int(line.split("=")[1].split()[0])
want = ["sqlite3_step", "sqlite3_prepare_v2", "sqlite3_prepare_v3", "sqlite3LockAndPrepare", "sqlite3_reset",
        "sqlite3_exec", "fdatasync", "fsync"]
per = " ".join(f"{k}={calls.get(k, 0) / n:.2f}" for k in want if calls.get(k, 0))
print(f"RESULT instructions_per_{what}={total // n} {per} clients={clients} n={n} binary={binary}")
