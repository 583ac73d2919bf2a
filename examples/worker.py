#!/usr/bin/env python3
"""A tiny batchd external worker, standard library only.

It claims tasks of the given definition names (POST /api/v1/BatchTask/Acquire, long-polling),
"runs" each one by sleeping ParameterObject.Seconds (default 1) while sending heartbeats with
progress, and finishes it with PUT /api/v1/BatchTask/{id} and the X-Lease-Token header.
A heartbeat answer with StopRequested ends the task Failed at once.

    worker.py --url http://127.0.0.1:8080 --user worker --password secret NAME [NAME ...]
              [--once] [--wait 20] [--heartbeat SECONDS]

The associate must have the worker (or admin) role. Exit status: 0 done; 3 a write was refused
because the lease was lost (expired or taken back) - the task is someone else's now; 2 error.
"""

import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.request


class LeaseLost(Exception):
    pass


def call(args, method, path, body=None, token=None):
    req = urllib.request.Request(args.url.rstrip("/") + path, method=method)
    auth = base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
    req.add_header("Authorization", "Basic " + auth)
    req.add_header("Accept", "application/json")
    if token:
        req.add_header("X-Lease-Token", token)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data=data, timeout=args.wait + 30) as res:
            text = res.read().decode()
            return res.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        if e.code == 409 and token:
            raise LeaseLost(e.read().decode())
        raise


def log(*parts):
    print(*parts, flush=True)


def run_one(args, claimed):
    token = claimed["LeaseToken"]
    task = claimed["Task"]
    tid = task["Id"]
    params = task.get("ParameterObject") or {}
    seconds = float(params.get("Seconds", "1"))
    beat = args.heartbeat or claimed.get("HeartbeatSeconds", 10)
    log(f"task {tid} acquired ({task['Name']}, attempt {claimed.get('Attempt')}), working {seconds}s")

    def heartbeat(percent, text):
        _, answer = call(args, "POST", f"/api/v1/BatchTask/{tid}/Heartbeat",
                         {"ProgressPercent": percent, "ProgressDescription": text}, token)
        return answer

    answer = heartbeat(0, "starting")
    done = 0.0
    while done < seconds and not answer.get("StopRequested"):
        step = min(beat, seconds - done)
        time.sleep(step)
        done += step
        answer = heartbeat(int(done * 100 / seconds) if seconds else 100, f"{done:.1f} of {seconds} s")
    if answer.get("StopRequested"):
        body = {"State": "Failed", "Result": f"stopped on request of {answer.get('StopRequestedBy')}"}
    else:
        body = {"State": "Succeeded", "Result": "ok", "ProgressPercent": 100,
                "Response": f"worked {seconds:g}s on {task['Name']} {tid}"}
    call(args, "PUT", f"/api/v1/BatchTask/{tid}", body, token)
    log(f"task {tid} finished: {body['State']}")


def main():
    p = argparse.ArgumentParser(description="batchd example worker")
    p.add_argument("--url", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--wait", type=float, default=20, help="long-poll seconds per Acquire")
    p.add_argument("--heartbeat", type=float, default=None, help="seconds between heartbeats")
    p.add_argument("--once", action="store_true", help="exit after one task")
    p.add_argument("names", nargs="+")
    args = p.parse_args()
    try:
        while True:
            status, claimed = call(args, "POST", "/api/v1/BatchTask/Acquire",
                                   {"Names": args.names, "Wait": args.wait})
            if status == 204:
                continue
            run_one(args, claimed)
            if args.once:
                return 0
    except LeaseLost as e:
        log(f"lease lost, write refused: {e}")
        return 3
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        log(f"error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
