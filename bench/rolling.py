#!/usr/bin/env python3
"""Rolling restart under load: two patgate replicas on one PostgreSQL database behind
HAProxy, which checks /patgate/readyz; a steady token-request load through HAProxy the
whole time; each replica in turn gets SIGTERM, is waited for, started again and waited
for until HAProxy sends to it again.

Counts the requests that failed (connection errors, timeouts, any status but 200), and
for each stop records, from SIGTERM: when /patgate/readyz first answered 503, when the
port first refused a connection, and when the process exited. With shutdown_delay the
first must come before the second.

Run through bench/rolling.sh, which installs HAProxy and builds the release binaries.
Prints a Markdown table and writes bench/results/rolling.json.
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
PATGATE = os.path.join(RELEASE, "patgate")
LOADGEN = os.path.join(RELEASE, "examples", "loadgen")



def free_port():
    """A loopback port nothing listens on, so that two runs on one machine do not meet."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FRONT_PORT = free_port()  # HAProxy, where clients connect
DEPLOY_PORT = free_port()  # HAProxy's second frontend: a Deploy stand-in that answers 200
REPLICA_PORTS = (free_port(), free_port())


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def readyz(port):
    """The status /patgate/readyz answers on a replica; "refused" when the port refuses
    connections, "error" for any other failure (a timeout, a connection closed early)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/patgate/readyz", timeout=0.5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except urllib.error.URLError as e:
        return "refused" if isinstance(e.reason, ConnectionRefusedError) else "error"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "error"


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def psql(url, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


class Replica:
    def __init__(self, work, name, port, env):
        self.name, self.port, self.env = name, port, env
        self.config = os.path.join(work, f"{name}.yaml")
        self.log_path = os.path.join(work, f"{name}.log")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [PATGATE, "serve", "--config", self.config],
            env={**os.environ, **self.env, "PATGATE_LISTEN": f"127.0.0.1:{self.port}"},
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "a"))
        wait_for(lambda: readyz(self.port) == 200, 30, f"{self.name} ready")

    def stop(self):
        """SIGTERM while /patgate/readyz and the port are polled; returns the timings."""
        samples = []  # (seconds since SIGTERM, what readyz answered)
        done = threading.Event()
        sent = [None]

        def poll():
            while not done.is_set():
                status = readyz(self.port)
                if sent[0] is not None:
                    samples.append((time.monotonic() - sent[0], status))
                time.sleep(0.01)

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.1)
        sent[0] = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        exited = time.monotonic() - sent[0]
        done.set()
        poller.join()
        first_503 = next((t for t, s in samples if s == 503), None)
        first_refused = next((t for t, s in samples if s == "refused"), None)
        odd = sorted({s for _, s in samples if s not in (200, 503, "refused")}, key=str)
        last_200 = max((t for t, s in samples if s == 200), default=None)
        return {"replica": self.name, "exit_code": code, "readyz_503_after_s": first_503,
                "last_readyz_200_s": last_200, "port_closed_after_s": first_refused,
                "exited_after_s": round(exited, 3), "other_answers": odd}


def haproxy_config(work, inter_ms, retries):
    servers = "\n".join(
        f"    server {name} 127.0.0.1:{port} check" for name, port in zip(("a", "b"), REPLICA_PORTS))
    text = f"""global
    maxconn 4096
    stats socket {work}/haproxy.sock mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # Connection failures only (HAProxy's default retry-on), ROLLING_RETRIES times.
    retries {retries}
    option http-keep-alive

frontend clients
    bind 127.0.0.1:{FRONT_PORT}
    default_backend patgate

backend patgate
    balance roundrobin
    option httpchk GET /patgate/readyz
    http-check expect status 200
    default-server inter {inter_ms}ms fall 2 rise 2
{servers}

# A Deploy stand-in: every request answered 200 by HAProxy itself.
frontend deploy
    bind 127.0.0.1:{DEPLOY_PORT}
    http-request return status 200 content-type text/plain string "deploy"
"""
    path = os.path.join(work, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(text)
    return path


def haproxy_state(work):
    """HAProxy's view of the two servers: {name: UP|DOWN|...}."""
    out = subprocess.run(["socat", "-", f"UNIX-CONNECT:{work}/haproxy.sock"], input="show stat\n",
                         capture_output=True, text=True).stdout
    state = {}
    for line in out.splitlines():
        cols = line.split(",")
        if len(cols) > 17 and cols[0] == "patgate" and cols[1] in ("a", "b"):
            state[cols[1]] = cols[17]
    return state


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=2000, help="token requests per second")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--shutdown-delay", default="3s", help="shutdown_delay of the replicas")
    p.add_argument("--check-interval-ms", type=int, default=500, help="HAProxy health-check interval")
    p.add_argument("--retries", type=int, default=int(os.environ.get("ROLLING_RETRIES", "3")),
                   help="HAProxy retries on connection failures (its default is 3)")
    p.add_argument("--rounds", type=int, default=1, help="rolling restarts (each restarts both replicas)")
    args = p.parse_args()

    base = os.environ.get("PATGATE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    db = "patgate_rolling"
    psql(base, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    psql(base, f"CREATE DATABASE {db}")
    db_url = base.rsplit("/", 1)[0] + "/" + db

    work = tempfile.mkdtemp(prefix="patgate-rolling-")
    env = {
        "PATGATE_DATABASE__URL": db_url,
        "PATGATE_SECRETS__TOKEN_KEY": secrets.token_hex(32),
        "PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET": secrets.token_hex(32),
        "PATGATE_SHUTDOWN_DELAY": args.shutdown_delay,
    }
    replicas = [Replica(work, name, port, env) for name, port in zip(("a", "b"), REPLICA_PORTS)]
    for r in replicas:
        with open(r.config, "w") as f:
            f.write(f"""listen: 127.0.0.1:{r.port}
upstream:
  url: http://127.0.0.1:{DEPLOY_PORT}
database:
  url: postgres://unused
  max_connections: 4
secrets:
  token_key_file: {work}/unused.key
log:
  level: info
shutdown_grace: 10s
workers: 1
""")
    haproxy = subprocess.Popen(["haproxy", "-f", haproxy_config(work, args.check_interval_ms, args.retries), "-db"],
                               stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "haproxy.log"), "w"))
    loads = []
    try:
        for r in replicas:
            r.start()
        wait_for(lambda: haproxy_state(work) == {"a": "UP", "b": "UP"}, 20, "HAProxy to see both replicas up")
        token = subprocess.run([PATGATE, "--config", replicas[0].config, "token", "create", "--user", "alice",
                                "--name", "rolling", "--expires", "7d"], env={**os.environ, **env},
                               capture_output=True, text=True, check=True).stdout.strip()
        tokens = os.path.join(work, "tokens.txt")
        with open(tokens, "w") as f:
            f.write(token + "\n")

        stops = []
        for round_ in range(args.rounds):
            # The load runs from before the first stop to after the last start.
            duration = 6 + 2 * (float(args.shutdown_delay.rstrip("s")) + 6)
            load = subprocess.Popen([LOADGEN, "--url", f"http://127.0.0.1:{FRONT_PORT}/deployit/repository/ci/x",
                                     "--rate", str(args.rate), "--duration", str(duration),
                                     "--connections", str(args.connections), "--tokens", tokens, "--mode", "fixed"],
                                    stdout=subprocess.PIPE, text=True)
            started = time.monotonic()
            time.sleep(3)
            for r in replicas:
                log(f"round {round_ + 1}: restarting {r.name}")
                timing = r.stop()
                timing["round"] = round_ + 1
                r.start()
                wait_for(lambda: haproxy_state(work).get(r.name) == "UP", 20, f"HAProxy to see {r.name} up")
                timing["back_in_rotation_after_s"] = round(time.monotonic() - started, 1)
                stops.append(timing)
                log(f"  {json.dumps(timing)}")
            out, _ = load.communicate(timeout=duration + 30)
            result = json.loads(out)
            result["round"] = round_ + 1
            result["duration_s"] = duration
            loads.append(result)
            log(f"  load: {out.strip()}")
    finally:
        for r in replicas:
            if r.proc and r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)
                r.proc.wait(timeout=60)
        haproxy.terminate()
        haproxy.wait()

    failed = sum(l["errors"] + sum(n for s, n in l["status"].items() if s != "200") for l in loads)
    report = {"shutdown_delay": args.shutdown_delay, "check_interval_ms": args.check_interval_ms,
              "retries": args.retries, "rate": args.rate, "loads": loads, "stops": stops, "failed": failed}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "rolling.json"), "w") as f:
        json.dump(report, f, indent=2)

    print(f"\nshutdown_delay {args.shutdown_delay}, HAProxy check every {args.check_interval_ms} ms "
          f"(fall 2, rise 2), retries {args.retries}, {args.rate:.0f} token requests/s:\n")
    print("| round | requests | failed | statuses | p99 ms | max ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for l in loads:
        bad = l["errors"] + sum(n for s, n in l["status"].items() if s != "200")
        print(f"| {l['round']} | {l['requests']} | {bad} | {l['status']} | {l['p99_us'] / 1000:.1f} | "
              f"{l['max_us'] / 1000:.1f} |")
    print("\n| round | replica | readyz 503 after SIGTERM | last readyz 200 after SIGTERM | port refused after | exited after | exit code |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    fmt = lambda v: "never" if v is None else f"{v:.2f} s"
    for s in stops:
        print(f"| {s['round']} | {s['replica']} | {fmt(s['readyz_503_after_s'])} | {fmt(s['last_readyz_200_s'])} | "
              f"{fmt(s['port_closed_after_s'])} | {s['exited_after_s']:.2f} s | {s['exit_code']} |")
    print(f"\nfailed requests: {failed}")
    ordered = all(s["readyz_503_after_s"] is not None and s["port_closed_after_s"] is not None
                  and s["readyz_503_after_s"] < s["port_closed_after_s"] for s in stops)
    print(f"readiness turned 503 before the port closed, at every stop: {'yes' if ordered else 'no'}")
    shutil.rmtree(work, ignore_errors=True)
    psql(base, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    return 0 if failed == 0 and ordered else 1


if __name__ == "__main__":
    sys.exit(main())
