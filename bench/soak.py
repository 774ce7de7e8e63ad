#!/usr/bin/env python3
"""A long run: the gateway under steady load for --seconds (1800), on SQLite and on
PostgreSQL at the same time (one gateway each), while tokens are created, rotated and
revoked, with a notifier pass in the middle.

Per database:
  - token requests at --rate req/s over 50 tokens (the fast path) and anonymous
    requests at a quarter of that (the general path), each through loadgen;
  - once a second: a token created with the CLI and used, every third one rotated (the
    successor must work, the predecessor must be refused once its grace of 0 s is
    over), then revoked (refused within 1 s);
  - at half time, `patgate notify run-once` against 2,000 tokens whose expiries are
    spread over the coming year (owners with e-mail addresses), through a real SMTP
    server (tests/smtp): every e-mail the pass reports sent must arrive, and a second
    pass right after must send none;
  - every 15 s: resident memory, open file descriptors, database size.

Passes when nothing failed, and resident memory and descriptors stay flat after the
warm-up (the first tenth of the run): memory within max(8 MiB, 10 %) of its first
sample after warm-up, descriptors within 16. Writes bench/results/soak.json and prints
a Markdown table. Build first (bench/run.sh builds everything), then:

  python3 bench/soak.py --seconds 1800
"""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

SMTP_PYTHON = os.path.join(bench.ROOT, "tests", "smtp", ".venv", "bin", "python")
SMTP_SERVER = os.path.join(bench.ROOT, "tests", "smtp", "server.py")


def request(port, path, headers=None, method="GET", body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {}, method=method, data=body)
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def admin(port, method, path, body):
    headers = {"authorization": "Basic c29hay1hZG1pbjpzb2Fr", "content-type": "application/json"}  # soak-admin:soak
    status, answer = request(port, path, headers, method, json.dumps(body).encode())
    if status >= 300:
        raise RuntimeError(f"{method} {path}: {status} {answer[:300]!r}")
    return json.loads(answer or b"null")


def db_size(url, work, name):
    if url.startswith("sqlite://"):
        path = url[len("sqlite://"):]
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    database = url.rsplit("/", 1)[1]
    out = subprocess.run(["psql", url, "-Atc", f"SELECT pg_database_size('{database}')"], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def row_counts(url):
    tables = ["tokens", "audit", "token_usage_days", "token_refusals", "notifications"]
    if url.startswith("sqlite://"):
        import sqlite3
        con = sqlite3.connect(url[len("sqlite://"):])
        counts = {}
        for t in tables:
            try:
                counts[t] = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            except sqlite3.Error:
                pass
        return counts
    counts = {}
    for t in tables:
        out = subprocess.run(["psql", url, "-Atc", f"SELECT count(*) FROM {t}"], capture_output=True, text=True)
        if out.returncode == 0:
            counts[t] = int(out.stdout.strip())
    return counts


class Soak:
    def __init__(self, name, url, work, args):
        self.name, self.url, self.work, self.args = name, url, work, args
        self.port = bench.free_port()
        self.failures = []
        self.samples = []
        self.churn = {"created": 0, "rotated": 0, "revoked": 0, "revocation_ms": []}
        self.config = bench.write_config(work, f"soak-{name}", self.port, url, extra="""signin:
  admin_users: [soak-admin]
notify:
  daily_at: "off"
""")

    def fail(self, what):
        bench.log(f"soak {self.name}: FAILED {what}")
        self.failures.append(what)

    def cli(self, *args):
        return bench.cli(self.config, *args)

    def setup(self):
        bench.fill_tokens(self.config, 2000, os.path.join(self.work, f"soak-expiring-{self.name}.txt"), "--expiring", "--users", "200")
        self.mail_out = os.path.join(self.work, f"soak-mail-{self.name}.jsonl")
        self.smtp = subprocess.Popen([SMTP_PYTHON, SMTP_SERVER, "--port", "0", "--out", self.mail_out],
                                     stdout=subprocess.PIPE, text=True)
        smtp_port = int(self.smtp.stdout.readline().split()[1])
        self.gw = bench.Patgate(self.config, self.port)
        made = admin(self.port, "POST", "/patgate/api/v1/smtp-servers",
                     {"name": "relay", "host": "127.0.0.1", "port": smtp_port, "from_address": "Deploy <deploy@example.com>"})
        admin(self.port, "PUT", "/patgate/api/v1/settings", {"notifications": {"enabled": True, "smtp_server_id": made["id"]}})
        self.tokens = os.path.join(self.work, f"soak-tokens-{self.name}.txt")
        with open(self.tokens, "w") as f:
            for i in range(50):
                f.write(self.cli("token", "create", "--user", f"load{i % 10}", "--name", f"load{i}", "--expires", "30d") + "\n")

    def start_load(self):
        seconds, rate = self.args.seconds, self.args.rate
        self.loads = [
            subprocess.Popen(bench.loadgen(self.port, "cycle", rate, seconds, 16, self.tokens), stdout=subprocess.PIPE, text=True),
            subprocess.Popen(bench.loadgen(self.port, "none", max(rate // 4, 1), seconds, 8), stdout=subprocess.PIPE, text=True),
        ]

    def sample(self):
        pid = self.gw.proc.pid
        self.samples.append({
            "t": round(time.time() - self.started),
            "rss_kib": bench.rss_kib(pid),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "db_bytes": db_size(self.url, self.work, self.name),
        })

    def churn_once(self, n):
        created = json.loads(self.cli("token", "create", "--user", f"churn{n % 20}", "--name", f"churn{n}", "--expires", "7d", "--json"))
        self.churn["created"] += 1
        token, token_id = created["token"], created["id"]
        status, _ = request(self.port, "/ok", {"x-deploy-personal-token": token})
        if status != 200:
            self.fail(f"a new token answered {status}")
        if n % 3 == 0:
            rotated = json.loads(self.cli("token", "rotate", token_id, "--grace", "0s", "--json"))
            self.churn["rotated"] += 1
            status, _ = request(self.port, "/ok", {"x-deploy-personal-token": rotated["token"]})
            if status != 200:
                self.fail(f"a rotated token's successor answered {status}")
            old = self.wait_refused(token)
            if old is None:
                self.fail("a rotated-away token still worked after 1 s")
            token, token_id = rotated["token"], rotated["id"]
        self.cli("token", "revoke", token_id)
        self.churn["revoked"] += 1
        waited = self.wait_refused(token)
        if waited is None:
            self.fail("a revoked token still worked after 1 s")
        else:
            self.churn["revocation_ms"].append(waited)

    def wait_refused(self, token):
        t0 = time.time()
        while time.time() - t0 < 1.0:
            status, _ = request(self.port, "/ok", {"x-deploy-personal-token": token})
            if status == 401:
                return round((time.time() - t0) * 1000)
            time.sleep(0.01)
        return None

    def notifier_pass(self):
        def run_once():
            out = subprocess.run([bench.PATGATE, "--config", self.config, "notify", "run-once"], capture_output=True, text=True)
            if out.returncode != 0:
                self.fail(f"notify run-once: {out.stderr.strip()[-300:]}")
            lines = [line for line in (out.stdout + out.stderr).splitlines() if "notification pass" in line]
            return lines[-1] if lines else out.stdout.strip()

        first = run_once()
        time.sleep(2)
        received = sum(1 for _ in open(self.mail_out)) if os.path.exists(self.mail_out) else 0
        second = run_once()
        time.sleep(2)
        again = sum(1 for _ in open(self.mail_out)) if os.path.exists(self.mail_out) else 0
        self.notify = {"first_pass": first, "second_pass": second, "emails_after_first": received, "emails_after_second": again}
        found = re.search(r"(\d+) due, (\d+) sent, (\d+) failed", first)
        due, sent, failed = (int(g) for g in found.groups()) if found else (None, None, None)
        self.notify.update({"due": due, "sent": sent, "failed": failed})
        if not sent:
            self.fail(f"the notifier pass sent nothing: {first!r}")
        elif sent != due or failed:
            self.fail(f"the pass found {due} due and sent {sent} ({failed} failed)")
        elif received != sent:
            self.fail(f"the pass reported {sent} sent, the SMTP server received {received}")
        if again != received:
            self.fail(f"a second pass sent {again - received} more")
        bench.log(f"soak {self.name}: notifier {self.notify}")

    def run(self):
        try:
            self.setup()
            self.started = time.time()
            self.start_load()
            n, notified, next_sample = 0, False, 0.0
            while time.time() - self.started < self.args.seconds - 5:
                elapsed = time.time() - self.started
                if elapsed >= next_sample:
                    self.sample()
                    next_sample += 15
                if not notified and elapsed >= self.args.seconds / 2:
                    self.notifier_pass()
                    notified = True
                self.churn_once(n)
                n += 1
                time.sleep(1)
            # The last sample while the load still runs: its connections close with it.
            self.sample()
            self.outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in self.loads]
            self.rows = row_counts(self.url)
            for label, out in zip(("token requests", "anonymous requests"), self.outs):
                bad = {k: v for k, v in out["status"].items() if k != "200"}
                if out["errors"] or bad:
                    self.fail(f"{label}: {out['errors']} errors, {bad}")
        except Exception as e:  # noqa: BLE001 - any failure fails the soak, with its reason
            self.fail(f"{type(e).__name__}: {e}")
        finally:
            if getattr(self, "gw", None):
                self.gw.stop()
            if getattr(self, "smtp", None):
                self.smtp.terminate()

    def verdict(self):
        warm = [s for s in self.samples if s["t"] >= self.args.seconds / 10]
        if len(warm) < 2:
            self.fail("too few samples after the warm-up")
            return {}
        rss0, fds0 = warm[0]["rss_kib"], warm[0]["fds"]
        rss_max = max(s["rss_kib"] for s in warm)
        allowed = max(8 * 1024, rss0 // 10)
        if rss_max - rss0 > allowed:
            self.fail(f"resident memory grew {rss_max - rss0} KiB after warm-up (allowed {allowed})")
        fd_range = max(abs(s["fds"] - fds0) for s in warm)
        if fd_range > 16:
            self.fail(f"open descriptors moved by {fd_range} after warm-up")
        return {"rss_first_kib": rss0, "rss_max_kib": rss_max, "rss_last_kib": warm[-1]["rss_kib"], "rss_allowed_kib": allowed,
                "fds_first": fds0, "fds_max_move": fd_range, "db_first": self.samples[0]["db_bytes"],
                "db_last": self.samples[-1]["db_bytes"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=1800)
    parser.add_argument("--rate", type=int, default=800, help="token requests per second per gateway")
    parser.add_argument("--postgres", default=os.environ.get("PATGATE_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    work = bench.tempfile.mkdtemp(prefix="patgate-soak-")
    upstream = bench.Nginx(work, "upstream", f"""
        server {{
            listen 127.0.0.1:{bench.UPSTREAM_PORT} reuseport backlog=4096;
            location / {{ return 200 "ok"; }}
        }}""", 1)
    try:
        bench.wait_port(bench.UPSTREAM_PORT)
        soaks = [Soak(name, url, work, args) for name, url in bench.databases(work, args, "soak")]
        threads = [threading.Thread(target=s.run) for s in soaks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        upstream.stop()
    results, rows = {}, []
    for s in soaks:
        v = s.verdict()
        results[s.name] = {"verdict": v, "failures": s.failures, "samples": s.samples, "churn": s.churn,
                           "loads": getattr(s, "outs", []), "notify": getattr(s, "notify", {}), "rows": getattr(s, "rows", {})}
        requests = sum(o["requests"] for o in getattr(s, "outs", []))
        errors = sum(o["errors"] + sum(n for k, n in o["status"].items() if k != "200") for o in getattr(s, "outs", []))
        delays = s.churn["revocation_ms"]
        rows.append([
            s.name, f"{requests:,}", errors,
            f"{s.churn['created']} / {s.churn['rotated']} / {s.churn['revoked']}",
            f"{max(delays) if delays else '-'} ms",
            f"{getattr(s, 'notify', {}).get('emails_after_first', '-')} (second pass: +{getattr(s, 'notify', {}).get('emails_after_second', 0) - getattr(s, 'notify', {}).get('emails_after_first', 0)})",
            f"{v.get('rss_first_kib', 0) / 1024:.1f} → max {v.get('rss_max_kib', 0) / 1024:.1f}, last {v.get('rss_last_kib', 0) / 1024:.1f} MiB",
            f"{v.get('fds_first', '-')} (±{v.get('fds_max_move', '-')})",
            f"{v.get('db_first', 0) / 1e6:.1f} → {v.get('db_last', 0) / 1e6:.1f} MB",
            "pass" if not s.failures else "FAIL: " + "; ".join(s.failures[:3]),
        ])
    os.makedirs(os.path.join(bench.ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(bench.ROOT, "bench", "results", "soak.json"), "w") as f:
        json.dump(results, f, indent=1)
    bench.table(
        f"Soak: {args.seconds} s at {args.rate} token req/s + {args.rate // 4} anonymous req/s per gateway, churn once a second",
        ["database", "requests", "errors / non-200", "tokens created / rotated / revoked", "slowest revocation",
         "reminder e-mails", "RSS after warm-up", "open fds", "database size", "result"],
        rows,
    )
    sys.exit(1 if any(s.failures for s in soaks) else 0)


if __name__ == "__main__":
    main()
