#!/usr/bin/env python3
"""patgate benchmarks: everything on loopback, side by side, medians of interleaved rounds.

Run through bench/run.sh, which installs nginx and wrk and builds the release binaries.
Prints a Markdown table per scenario and writes bench/results/latest.json.

Scenarios (see BENCHMARKS.md for the targets):
  hot       patgate (token auth, cache hit) vs nginx (plain proxy) vs direct: throughput,
            CPU time per request, p99 at half the maximum rate.
  access    the hot path with the access log (log.access) off and on.
  miss      first request for each of many tokens with --tokens tokens in the database,
            on SQLite and PostgreSQL.
  flood     valid clients at half load while others send unknown and malformed tokens.
  memory    RSS with 100,000 tokens cached; RSS growth while 1 GiB is uploaded.
  scaleout  two replicas on one PostgreSQL database under load while tokens are created
            and revoked with the CLI.
  notify    the expiry notifier finding the tokens due for an e-mail among --tokens
            tokens expiring over the coming year, on SQLite and PostgreSQL.
  syscalls  system calls per request of patgate and nginx (strace -c -f), for the same load.
  revalidation
            --sso-users SSO users (10,000) all due for re-validation at once against the
            test OpenID provider (tests/oidc, on Node): how long until every one has been
            asked, and the proxy's p99 at a fixed rate before and while it runs.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
# BENCH_PATGATE: another build of the gateway to measure (for example an earlier one).
PATGATE = os.environ.get("BENCH_PATGATE") or os.path.join(RELEASE, "patgate")
LOADGEN = os.path.join(RELEASE, "examples", "loadgen")
FILL_TOKENS = os.path.join(RELEASE, "examples", "fill_tokens")
NOTIFY_DUE = os.path.join(RELEASE, "examples", "notify_due")
FILL_SSO_USERS = os.path.join(RELEASE, "examples", "fill_sso_users")
INVENTORY_BENCH = os.path.join(RELEASE, "examples", "inventory_bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")



def free_port():
    """A loopback port nothing listens on, so that two runs on one machine do not meet."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


UPSTREAM_PORT = free_port()
NGINX_PORT = free_port()
PATGATE_PORT = free_port()
BEFORE_PORT = free_port()
REPLICA_PORTS = (free_port(), free_port())
PROVIDER_PORT = free_port()


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except FileNotFoundError:
            pass
    return total / CLK_TCK


def rss_kib(pid, field="VmRSS:"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/patgate/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


class Nginx:
    """An nginx instance of its own (prefix, config, pid file)."""

    def __init__(self, work, name, body, workers):
        self.prefix = os.path.join(work, name)
        os.makedirs(os.path.join(self.prefix, "logs"), exist_ok=True)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(
                f"""worker_processes {workers};
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {self.prefix}/body;
    proxy_temp_path {self.prefix}/proxy;
    fastcgi_temp_path {self.prefix}/fastcgi;
    uwsgi_temp_path {self.prefix}/uwsgi;
    scgi_temp_path {self.prefix}/scgi;
    keepalive_requests 1000000;
{body}
}}
"""
            )
        subprocess.run(["nginx", "-p", self.prefix, "-c", self.conf], check=True)
        time.sleep(0.3)

    def pids(self):
        master = int(open(os.path.join(self.prefix, "nginx.pid")).read())
        children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
        return [master] + [int(c) for c in children]

    def stop(self):
        subprocess.run(["nginx", "-p", self.prefix, "-c", self.conf, "-s", "stop"], check=False)


def write_config(work, name, port, db_url, extra="", max_tokens=2_000_000, access=False):
    path = os.path.join(work, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(
            f"""listen: 127.0.0.1:{port}
upstream:
  url: http://127.0.0.1:{UPSTREAM_PORT}
  max_idle_per_host: 256
  identity:
    allow_header_without_secret: true
database:
  url: {db_url}
secrets:
  token_key_file: {work}/token.key
cache:
  max_tokens: {max_tokens}
log:
  level: {"warn,access=info" if access else "warn"}
  access: {"true" if access else "false"}
{extra}"""
        )
    return path


class Patgate:
    def __init__(self, config, port, binary=PATGATE):
        self.log = open(config + ".log", "w")
        self.proc = subprocess.Popen([binary, "serve", "--config", config], stderr=self.log)
        self.port = port
        try:
            wait_port(port)
        except RuntimeError:
            self.proc.kill()
            raise RuntimeError(f"patgate did not start: {open(config + '.log').read()}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def cli(config, *args, binary=PATGATE):
    return subprocess.run([binary, "--config", config, *args], check=True, capture_output=True, text=True).stdout.strip()


def loadgen(port, mode="none", rate=0, duration=5, connections=32, tokens=None, source_ip=None, max_requests=None, path="/ok"):
    cmd = [LOADGEN, "--url", f"http://127.0.0.1:{port}{path}", "--rate", str(rate), "--duration", str(duration),
           "--connections", str(connections), "--mode", mode]
    if tokens:
        cmd += ["--tokens", tokens]
    if source_ip:
        cmd += ["--source-ip", source_ip]
    if max_requests:
        cmd += ["--max-requests", str(max_requests)]
    return cmd


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def wrk(port, duration, connections, header=None):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if header:
        cmd += ["-H", header]
    cmd.append(f"http://127.0.0.1:{port}/ok")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rps = float(next(l for l in out.splitlines() if l.startswith("Requests/sec")).split()[1])
    total = int(next(l for l in out.splitlines() if "requests in" in l).split()[0])
    non2xx = 0
    for l in out.splitlines():
        if "Non-2xx" in l:
            non2xx = int(l.split()[-1])
    return rps, total, non2xx


def med(values):
    return statistics.median(values)


def table(title, header, rows):
    lines = [f"\n### {title}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# ------------------------------------------------------------------ scenarios


def scenario_hot(work, args, results):
    db = f"sqlite://{work}/hot.db"
    config = write_config(work, "hot", PATGATE_PORT, db)
    gw = Patgate(config, PATGATE_PORT)
    token = cli(config, "token", "create", "--user", "bench", "--name", "hot", "--expires", "7d")
    tokens = os.path.join(work, "hot-token.txt")
    open(tokens, "w").write(token + "\n")
    header = f"x-deploy-personal-token: {token}"
    nginx_proxy = results["_nginx_proxy"]

    targets = {
        "direct": (UPSTREAM_PORT, None, []),
        "nginx": (NGINX_PORT, None, nginx_proxy.pids()),
        "patgate": (PATGATE_PORT, header, [gw.proc.pid]),
    }
    # BENCH_BEFORE names an earlier build to measure in the same rounds, side by side.
    before_gw = None
    before_bin = os.environ.get("BENCH_BEFORE")
    if before_bin:
        before_config = write_config(work, "hot-before", BEFORE_PORT, f"sqlite://{work}/hot-before.db")
        before_gw = Patgate(before_config, BEFORE_PORT, before_bin)
        before_token = cli(before_config, "token", "create", "--user", "bench", "--name", "hot", "--expires", "7d",
                           binary=before_bin)
        before_tokens = os.path.join(work, "hot-before-token.txt")
        open(before_tokens, "w").write(before_token + "\n")
        targets["patgate before"] = (BEFORE_PORT, f"x-deploy-personal-token: {before_token}", [before_gw.proc.pid])
    token_files = {"patgate": tokens, "patgate before": before_tokens if before_bin else None}
    rps = {k: [] for k in targets}
    cpu = {k: [] for k in targets}
    for r in range(args.rounds):
        for name, (port, hdr, pids) in targets.items():
            wrk(port, 1, args.connections, hdr)  # warm-up
            before = cpu_seconds(pids)
            value, total, non2xx = wrk(port, args.duration, args.connections, hdr)
            if non2xx:
                raise RuntimeError(f"{name}: {non2xx} non-2xx answers")
            used = cpu_seconds(pids) - before
            rps[name].append(value)
            if pids:
                cpu[name].append(used / total * 1e6)
            log(f"hot round {r + 1}: {name} {value:.0f} req/s")
    m = {k: med(v) for k, v in rps.items()}
    ratio = med([p / n for p, n in zip(rps["patgate"], rps["nginx"])])

    # Fixed rate: half of patgate's maximum, interleaved.
    rate = int(m["patgate"] / 2)
    p99 = {k: [] for k in targets}
    p50 = {k: [] for k in targets}
    for r in range(args.rounds):
        for name, (port, hdr, _) in targets.items():
            mode = "fixed" if hdr else "none"
            out = run_json(loadgen(port, mode, rate, args.duration, 64, token_files.get(name)))
            if out["errors"] or set(out["status"]) != {"200"}:
                raise RuntimeError(f"{name}: {out}")
            p99[name].append(out["p99_us"])
            p50[name].append(out["p50_us"])
            log(f"rate round {r + 1}: {name} p50 {out['p50_us']} us p99 {out['p99_us']} us at {out['rps']} req/s")
    added = med([p - d for p, d in zip(p99["patgate"], p99["direct"])])
    added_nginx = med([p - d for p, d in zip(p99["nginx"], p99["direct"])])
    results["hot"] = {
        "rps": m, "ratio_patgate_over_nginx": ratio, "cpu_us_per_request": {k: med(v) for k, v in cpu.items() if v},
        "rate": rate, "p50_us": {k: med(v) for k, v in p50.items()}, "p99_us": {k: med(v) for k, v in p99.items()},
        "p99_added_us": {"patgate": added, "nginx": added_nginx},
    }
    gw.stop()
    extra = []
    if before_gw:
        before_gw.stop()
        b = "patgate before"
        before_ratio = med([a / o for a, o in zip(rps["patgate"], rps[b])])
        results["hot"]["before"] = {"binary": before_bin, "rps": m[b], "p99_us": med(p99[b]),
                                    "ratio_after_over_before": before_ratio}
        extra = [
            [f"patgate before ({os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(before_bin))))})",
             f"{m[b]:.0f}", f"{med(cpu[b]):.1f}", med(p50[b]), med(p99[b]),
             f"{med([p - d for p, d in zip(p99[b], p99['direct'])]):.0f} µs"],
            ["**after / before throughput**", f"**{before_ratio:.2f}**", "", "", "", ""],
        ]
    return table(
        f"Hot path ({args.rounds} interleaved rounds of {args.duration} s, wrk -t1 -c{args.connections}; fixed rate {rate} req/s)",
        ["target", "req/s (median)", "CPU µs/request", "p50 µs at fixed rate", "p99 µs at fixed rate", "p99 added over direct"],
        [
            ["direct", f"{m['direct']:.0f}", "-", med(p50["direct"]), med(p99["direct"]), "-"],
            ["nginx (plain proxy)", f"{m['nginx']:.0f}", f"{med(cpu['nginx']):.1f}", med(p50["nginx"]), med(p99["nginx"]), f"{added_nginx:.0f} µs"],
            ["patgate (token, cache hit)", f"{m['patgate']:.0f}", f"{med(cpu['patgate']):.1f}", med(p50["patgate"]), med(p99["patgate"]), f"{added:.0f} µs"],
            ["**patgate / nginx throughput**", f"**{ratio:.2f}**", "", "", "", ""],
        ] + extra,
    )


def scenario_access(work, args, results):
    """The hot path with the access log (log.access) off and on, interleaved rounds."""
    db = f"sqlite://{work}/access.db"
    variants = {
        "off": write_config(work, "access-off", PATGATE_PORT, db),
        "on": write_config(work, "access-on", PATGATE_PORT, db, access=True),
    }
    header = None
    rps = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    lines = 0
    for r in range(args.rounds):
        for name, config in variants.items():
            gw = Patgate(config, PATGATE_PORT)
            if header is None:
                token = cli(config, "token", "create", "--user", "bench", "--name", "access", "--expires", "7d")
                header = f"x-deploy-personal-token: {token}"
            wrk(PATGATE_PORT, 1, args.connections, header)  # warm-up
            before = cpu_seconds([gw.proc.pid])
            value, total, non2xx = wrk(PATGATE_PORT, args.duration, args.connections, header)
            if non2xx:
                raise RuntimeError(f"access log {name}: {non2xx} non-2xx answers")
            cpu[name].append((cpu_seconds([gw.proc.pid]) - before) / total * 1e6)
            rps[name].append(value)
            gw.stop()
            if name == "on":
                lines = sum(1 for line in open(config + ".log") if "duration_ms" in line)
            log(f"access round {r + 1}: log {name} {value:.0f} req/s")
    ratio = med([on / off for on, off in zip(rps["on"], rps["off"])])
    cpu_ratio = med([on / off for on, off in zip(cpu["on"], cpu["off"])])
    results["access"] = {"rps": {k: med(v) for k, v in rps.items()}, "cpu_us_per_request": {k: med(v) for k, v in cpu.items()},
                         "throughput_on_over_off": ratio, "cpu_on_over_off": cpu_ratio, "lines_last_round": lines}
    return table(
        f"Access log cost on the hot path ({args.rounds} interleaved rounds of {args.duration} s, wrk -t1 -c{args.connections}, token cache hit, lines to a file)",
        ["log.access", "req/s (median)", "CPU µs/request"],
        [
            ["false", f"{med(rps['off']):.0f}", f"{med(cpu['off']):.1f}"],
            ["true", f"{med(rps['on']):.0f}", f"{med(cpu['on']):.1f}"],
            ["**on / off**", f"**{ratio:.2f}**", f"**{cpu_ratio:.2f}**"],
        ],
    )


def fill_tokens(config, count, out, *flags):
    log(f"writing {count} tokens ...")
    started = time.time()
    subprocess.run([FILL_TOKENS, "--config", config, "--count", str(count), "--out", out, *flags], check=True)
    log(f"written in {time.time() - started:.0f} s")


def pg_database(args, name):
    base = args.postgres
    subprocess.run(["psql", base, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=True)
    subprocess.run(["psql", base, "-qc", f"CREATE DATABASE {name}"], check=True)
    return base.rsplit("/", 1)[0] + "/" + name


def databases(work, args, name):
    """(name, URL) of each database a scenario runs on: SQLite, and PostgreSQL when given."""
    backends = [("SQLite", f"sqlite://{work}/{name}.db")]
    if args.postgres:
        backends.append(("PostgreSQL", pg_database(args, f"patgate_bench_{name}")))
    return backends


def scenario_miss(work, args, results):
    rows = []
    results["miss"] = {}
    backends = databases(work, args, "million")
    for name, url in backends:
        config = write_config(work, f"miss-{name}", PATGATE_PORT, url)
        tokens = os.path.join(work, f"tokens-{name}.txt")
        fill_tokens(config, args.tokens, tokens)
        gw = Patgate(config, PATGATE_PORT)
        # Spread over the whole file: every request is the first for its token.
        out = run_json(loadgen(PATGATE_PORT, "unique", args.miss_rate, args.duration * 2, 64, tokens))
        m = metrics(PATGATE_PORT)
        if out["errors"] or set(out["status"]) != {"200"}:
            raise RuntimeError(f"miss {name}: {out}")
        results["miss"][name] = {**out, "store_lookups": m["patgate_store_lookups_total"]}
        rows.append([name, f"{args.tokens:,}", out["requests"], f"{out['rps']:.0f}", out["p50_us"], out["p99_us"], out["max_us"],
                     int(m["patgate_store_lookups_total"])])
        if name == "SQLite":
            results["_million_sqlite"] = (config, tokens)
        gw.stop()
    return table(
        "Cache miss: first request for each token",
        ["database", "tokens stored", "requests (each a new token)", "req/s", "p50 µs", "p99 µs", "max µs", "database lookups"],
        rows,
    )


def scenario_flood(work, args, results):
    config = write_config(work, "flood", PATGATE_PORT, f"sqlite://{work}/flood.db")
    gw = Patgate(config, PATGATE_PORT)
    token = cli(config, "token", "create", "--user", "bench", "--name", "flood", "--expires", "7d")
    tokens = os.path.join(work, "flood-token.txt")
    open(tokens, "w").write(token + "\n")
    rate = int(args.valid_rate or results.get("hot", {}).get("rate") or 5000)
    quiet, noisy = [], []
    before = after = None
    flood_out = []
    for r in range(args.rounds):
        quiet.append(run_json(loadgen(PATGATE_PORT, "fixed", rate, args.duration, 64, tokens)))
        before = metrics(PATGATE_PORT)
        # The flood's own CPU would be on the attacker's machines; here it shares the
        # gateway's two cores, so it runs at the lowest priority.
        flooders = [
            subprocess.Popen(["nice", "-n", "19"] + loadgen(PATGATE_PORT, "unknown", rate * 5, args.duration + 3, 64, source_ip="127.0.0.2"),
                             stdout=subprocess.PIPE, text=True),
            subprocess.Popen(["nice", "-n", "19"] + loadgen(PATGATE_PORT, "malformed", rate * 5, args.duration + 3, 64, source_ip="127.0.0.3"),
                             stdout=subprocess.PIPE, text=True),
        ]
        # Past the limiter's burst allowance: the steady state of the flood is measured.
        time.sleep(2)
        noisy.append(run_json(loadgen(PATGATE_PORT, "fixed", rate, args.duration, 64, tokens)))
        flood_out = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in flooders]
        after = metrics(PATGATE_PORT)
        log(f"flood round {r + 1}: quiet p99 {quiet[-1]['p99_us']} us, flooded p99 {noisy[-1]['p99_us']} us; flood {flood_out}")
    for out in quiet + noisy:
        if out["errors"] or set(out["status"]) != {"200"}:
            raise RuntimeError(f"valid client saw failures: {out}")
    q, n = med([o["p99_us"] for o in quiet]), med([o["p99_us"] for o in noisy])
    lookups = after["patgate_store_lookups_total"] - before["patgate_store_lookups_total"]
    flood_requests = sum(o["requests"] + o["errors"] for o in flood_out)
    results["flood"] = {"quiet": quiet, "flooded": noisy, "flood_clients": flood_out, "store_lookups_last_round": lookups}
    gw.stop()
    return table(
        f"Flood: valid clients at {rate} req/s; two flooders (nice 19) asking {rate * 5} req/s each (unknown tokens from 127.0.0.2, malformed from 127.0.0.3)",
        ["measure", "value"],
        [
            ["valid p99 without flood (median of rounds)", f"{q} µs"],
            ["valid p99 during flood", f"{n} µs"],
            ["**ratio (target ≤ 2)**", f"**{n / max(q, 1):.2f}**"],
            ["valid p99 each round, without / during flood", "; ".join(f"{a['p99_us']} / {b['p99_us']}" for a, b in zip(quiet, noisy))],
            ["without-flood rounds' spread (max / min p99: the noise)", f"{max(o['p99_us'] for o in quiet) / max(min(o['p99_us'] for o in quiet), 1):.2f}"],
            ["flood requests per second answered while measured (last round)", f"{flood_requests / (args.duration + 3):.0f}"],
            ["flood requests answered in the last round", flood_requests],
            ["flood answers by status (last round)", "; ".join(json.dumps(o["status"]) for o in flood_out)],
            ["database lookups caused by the flood (last round)", int(lookups)],
        ],
    )


def scenario_memory(work, args, results):
    # The default cache size (200,000), as an operator would run it.
    config = write_config(work, "memory", PATGATE_PORT, f"sqlite://{work}/memory.db", max_tokens=200_000)
    tokens = os.path.join(work, "tokens-memory.txt")
    fill_tokens(config, 100_000, tokens)
    gw = Patgate(config, PATGATE_PORT)
    idle = rss_kib(gw.proc.pid)
    out = run_json(loadgen(PATGATE_PORT, "unique", 0, 120, 32, tokens, max_requests=100_000))
    # Steady state: after the last-use writer's next batch (every 5 s) has gone out.
    time.sleep(6)
    m = metrics(PATGATE_PORT)
    cached = rss_kib(gw.proc.pid)
    gw.stop()

    config = write_config(work, "upload", PATGATE_PORT, f"sqlite://{work}/upload.db")
    gw = Patgate(config, PATGATE_PORT)
    token = cli(config, "token", "create", "--user", "bench", "--name", "upload", "--expires", "7d")
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_upload}", "-H", f"x-deploy-personal-token: {token}"]
    subprocess.run(curl + ["--data-binary", "warm", f"http://127.0.0.1:{PATGATE_PORT}/upload"], check=True, capture_output=True)
    before = rss_kib(gw.proc.pid)
    size = 1024 ** 3
    dd = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
    up = subprocess.run(curl + ["-T", "-", f"http://127.0.0.1:{PATGATE_PORT}/upload"], stdin=dd.stdout, capture_output=True, text=True)
    peak = rss_kib(gw.proc.pid, "VmHWM:")
    gw.stop()
    status, uploaded = up.stdout.split()
    results["memory"] = {"idle_kib": idle, "cached_100k_kib": cached, "cached_tokens": m["patgate_cached_tokens"],
                         "upload_status": status, "uploaded": int(float(uploaded)), "rss_before_upload_kib": before, "peak_kib": peak}
    return table(
        "Memory",
        ["measure", "value"],
        [
            ["RSS idle", f"{idle / 1024:.1f} MiB"],
            [f"RSS with {int(m['patgate_cached_tokens']):,} tokens cached ({out['requests']} distinct tokens used)", f"**{cached / 1024:.1f} MiB** (target ≤ 100 MiB)"],
            [f"1 GiB upload through the gateway (status {status}, {int(float(uploaded)):,} bytes)", f"peak RSS growth **{(peak - before) / 1024:.1f} MiB** (target < 32 MiB)"],
        ],
    )


def scenario_scaleout(work, args, results):
    if not args.postgres:
        log("scale-out needs --postgres; skipped")
        return ""
    url = pg_database(args, "patgate_bench_scaleout")
    configs = [write_config(work, f"replica{i}", port, url) for i, port in enumerate(REPLICA_PORTS)]
    replicas = [Patgate(c, p) for c, p in zip(configs, REPLICA_PORTS)]
    tokens = os.path.join(work, "scaleout-tokens.txt")
    with open(tokens, "w") as f:
        for i in range(200):
            f.write(cli(configs[0], "token", "create", "--user", f"user{i % 20}", "--name", f"load{i}", "--expires", "30d") + "\n")
    rate = int((results.get("hot", {}).get("rate") or 4000) / 2)
    loads = [subprocess.Popen(loadgen(p, "cycle", rate, args.scaleout_seconds, 32, tokens), stdout=subprocess.PIPE, text=True)
             for p in REPLICA_PORTS]
    before = [metrics(p) for p in REPLICA_PORTS]
    delays = []
    started = time.time()
    n = 0
    while time.time() - started < args.scaleout_seconds - 3:
        created = json.loads(cli(configs[n % 2], "token", "create", "--user", "churn", "--name", f"churn{n}", "--expires", "7d", "--json"))
        header = {"x-deploy-personal-token": created["token"]}
        other = REPLICA_PORTS[(n + 1) % 2]
        # The other replica caches the new token, then it is revoked on the shared database.
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{other}/ok", headers=header), timeout=5).read()
        cli(configs[n % 2], "token", "revoke", created["id"])
        t0 = time.time()
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{other}/ok", headers=header), timeout=5).read()
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    break
            if time.time() - t0 > 5:
                break
            time.sleep(0.005)
        delays.append(time.time() - t0)
        n += 1
        time.sleep(1)
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in loads]
    after = [metrics(p) for p in REPLICA_PORTS]
    for r in replicas:
        r.stop()
    lookups = sum(a["patgate_store_lookups_total"] - b["patgate_store_lookups_total"] for a, b in zip(after, before))
    hits = sum(a['patgate_token_cache_total{result="hit"}'] - b['patgate_token_cache_total{result="hit"}'] for a, b in zip(after, before))
    misses = sum(a['patgate_token_cache_total{result="miss"}'] - b['patgate_token_cache_total{result="miss"}'] for a, b in zip(after, before))
    errors = sum(o["errors"] for o in outs)
    non200 = sum(v for o in outs for k, v in o["status"].items() if k != "200")
    results["scaleout"] = {"loads": outs, "revocation_delays_s": delays, "store_lookups": lookups, "hits": hits, "misses": misses}
    return table(
        f"Scale-out: two replicas on one PostgreSQL database, {args.scaleout_seconds} s at {rate} req/s each, {len(delays)} tokens created and revoked meanwhile",
        ["measure", "value"],
        [
            ["requests served", sum(o["requests"] for o in outs)],
            ["request errors / non-200 answers", f"{errors} / {non200}"],
            ["revocation seen by the other replica: median / max", f"{med(delays) * 1000:.0f} ms / **{max(delays) * 1000:.0f} ms** (target ≤ 1000 ms)"],
            ["database token lookups (both replicas)", f"{int(lookups)} ({lookups / args.scaleout_seconds:.1f}/s)"],
            ["cache hit ratio", f"{hits / max(hits + misses, 1):.4f}"],
            ["p99 per replica", ", ".join(f"{o['p99_us']} µs" for o in outs)],
        ],
    )


def scenario_notify(work, args, results):
    """Time to find the tokens due for an expiry e-mail (7 and 30 days ahead) among
    --tokens tokens whose expiries are spread over the coming year; target 5 s."""
    rows = []
    results["notify"] = {}
    backends = databases(work, args, "notify")
    for name, url in backends:
        config = write_config(work, f"notify-{name}", PATGATE_PORT, url)
        fill_tokens(config, args.tokens, os.path.join(work, f"notify-tokens-{name}.txt"), "--expiring")
        for days in (7, 30):
            out = run_json([NOTIFY_DUE, "--config", config, "--days", str(days), "--rounds", str(args.rounds)])
            results["notify"][f"{name}-{days}d"] = out
            rows.append([name, f"{args.tokens:,}", days, f"{out['due']:,}", f"{med(out['seconds']):.3f}",
                         f"{max(out['seconds']):.3f}"])
    return table(
        "Notifier: finding the tokens due for an e-mail",
        ["database", "tokens stored", "days before", "tokens due", "seconds (median)", "seconds (max)"],
        rows,
    )


def scenario_inventory(work, args, results):
    """The administrators' inventory on --tokens tokens: each filter's page and total,
    through the store's query, on each database; target p99 under 200 ms."""
    rows = []
    results["inventory"] = {}
    backends = databases(work, args, "inventory")
    for name, url in backends:
        config = write_config(work, f"inventory-{name}", PATGATE_PORT, url)
        log(f"filling {args.tokens} tokens for the inventory on {name} ...")
        out = subprocess.run([INVENTORY_BENCH, "--config", config, "--count", str(args.tokens),
                              "--rounds", str(max(args.rounds, 50))], check=True, capture_output=True, text=True).stdout
        for line in out.strip().splitlines():
            r = json.loads(line)
            results["inventory"][f"{name}: {r['query']}"] = r
            rows.append([name, r["query"], f"{r['matched']:,}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                         f"{r['max_ms']:.1f}", "yes" if r["p99_ms"] < 200 else "**no**"])
    return table(
        f"Token inventory on {args.tokens:,} tokens (a page of 50 and the total; store query time)",
        ["database", "filter", "matching", "p50 ms", "p99 ms", "max ms", "p99 < 200 ms"],
        rows,
    )


def scenario_revalidation(work, args, results):
    """Every SSO user due for re-validation at once (the worst case: they all signed in
    together and the spread did not help), against the test OpenID provider."""
    n = args.sso_users
    callback = f"http://127.0.0.1:{PATGATE_PORT}/patgate/sso/callback"
    env = dict(os.environ, OIDC_CLIENT_ID="patgate", OIDC_CLIENT_SECRET="bench-client-secret",
               OIDC_REDIRECT_URIS=callback, OIDC_PORT=str(PROVIDER_PORT))
    env.pop("OIDC_ISSUER", None)
    provider_log = open(os.path.join(work, "provider.log"), "w")
    # The provider stands in for a service on other machines: it runs at a lower
    # priority so that its CPU comes second to the gateway's on the shared cores.
    provider = subprocess.Popen(["nice", "-n", "10", "node", os.path.join(ROOT, "tests", "oidc", "provider.mjs")],
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=provider_log, text=True)
    gw = None
    try:
        ready = provider.stdout.readline().split()
        if len(ready) != 2 or ready[0] != "READY":
            raise RuntimeError(f"the provider did not start: {open(os.path.join(work, 'provider.log')).read()}")
        issuer = ready[1]
        request = urllib.request.Request(f"http://127.0.0.1:{PROVIDER_PORT}/__control/mint?count={n}&prefix=sso", method="POST")
        minted = os.path.join(work, "minted.json")
        with open(minted, "wb") as f:
            f.write(urllib.request.urlopen(request, timeout=120).read())
        db = os.path.join(work, "revalidation.db")
        extra = f"""sso:
  issuer: {issuer}
  client_id: patgate
  client_secret: bench-client-secret
  redirect_url: {callback}
  scopes: [openid, profile, email, groups]
  revalidate_every: {args.revalidate_every}
"""
        config = write_config(work, "revalidation", PATGATE_PORT, f"sqlite://{db}", extra)
        started = time.time()
        subprocess.run([FILL_SSO_USERS, "--config", config, "--issuer", issuer, "--input", minted, "--due-in", "86400"],
                       check=True, capture_output=True)
        log(f"revalidation: {n} SSO users written in {time.time() - started:.1f} s")
        gw = Patgate(config, PATGATE_PORT)
        token = cli(config, "token", "create", "--user", "bench", "--name", "revalidation", "--expires", "7d")
        tokens = os.path.join(work, "revalidation-token.txt")
        open(tokens, "w").write(token + "\n")
        rate = args.valid_rate or 5000

        def asked():
            m = metrics(PATGATE_PORT)
            return sum(v for k, v in m.items() if k.startswith("patgate_sso_revalidations_total")), m

        quiet = []
        for _ in range(args.rounds):
            quiet.append(run_json(loadgen(PATGATE_PORT, "fixed", rate, args.duration, 64, tokens)))
        before, _ = asked()
        # Everyone due now, as the gateway would find them after a mass sign-in.
        import sqlite3
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE sso_revalidation SET next_at = ?", (int(time.time()),))
        due_at = time.time()
        busy, done_at, last = [], None, None
        while done_at is None and time.time() - due_at < 3600:
            busy.append(run_json(loadgen(PATGATE_PORT, "fixed", rate, args.duration, 64, tokens)))
            count, last = asked()
            log(f"revalidation: {int(count - before)} of {n} asked after {time.time() - due_at:.0f} s; p99 {busy[-1]['p99_us']} us")
            if count - before >= n:
                done_at = time.time()
        # The time the last user was asked, to within a quarter of a second.
        finished = None
        if done_at is not None:
            finished = done_at - due_at
        for out in quiet + busy:
            if out["errors"] or set(out["status"]) != {"200"}:
                raise RuntimeError(f"the proxy failed requests: {out}")
        by_result = {k.split('"')[1]: int(v) for k, v in (last or {}).items() if k.startswith("patgate_sso_revalidations_total")}
        q = med([o["p99_us"] for o in quiet])
        b = med([o["p99_us"] for o in busy])
        worst = max(o["p99_us"] for o in busy)
        results["revalidation"] = {"sso_users": n, "rate": rate, "seconds_upper_bound": finished, "quiet": quiet, "busy": busy,
                                   "results": by_result, "period": args.revalidate_every}
        return table(
            f"Re-validation: {n:,} SSO users due at once against the test provider (Node, nice 10); proxy at {rate} req/s, 64 connections",
            ["measure", "value"],
            [
                ["every user asked within (upper bound: the load rounds are " + str(args.duration) + " s)", f"{finished:.0f} s" if finished else "not finished"],
                ["period (sso.revalidate_every)", args.revalidate_every],
                ["answers", json.dumps(by_result)],
                ["proxy p99 before (median of rounds)", f"{q} µs"],
                ["proxy p99 while re-validating (median of rounds; worst)", f"{b} µs; {worst} µs"],
                ["**p99 ratio while / before**", f"**{b / max(q, 1):.2f}**"],
            ],
        )
    finally:
        if gw:
            gw.stop()
        provider.stdin.close()
        provider.terminate()
        provider.wait(timeout=10)


def strace_counts(pids, port, header, seconds, connections):
    """System calls per request of the processes `pids` while wrk runs for `seconds`
    (strace -c -f: counts, not times, are what is compared; strace slows the run)."""
    out = os.path.join(tempfile.mkdtemp(prefix="strace-"), "counts.txt")
    cmd = ["strace", "-c", "-f", "-o", out] + [a for pid in pids for a in ("-p", str(pid))]
    tracer = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    time.sleep(1)
    _, total, _ = wrk(port, seconds, connections, header)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(timeout=30)
    calls = {}
    for line in open(out):
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            calls[parts[-1]] = int(parts[3])
    return total, calls


def scenario_syscalls(work, args, results):
    """System calls per request, patgate (token, cache hit) against nginx (plain proxy)."""
    config = write_config(work, "syscalls", PATGATE_PORT, f"sqlite://{work}/syscalls.db")
    gw = Patgate(config, PATGATE_PORT)
    token = cli(config, "token", "create", "--user", "bench", "--name", "strace", "--expires", "7d")
    wrk(PATGATE_PORT, 1, args.connections, f"x-deploy-personal-token: {token}")
    nginx = results["_nginx_proxy"]
    wrk(NGINX_PORT, 1, args.connections)
    measured = {
        "nginx": strace_counts(nginx.pids(), NGINX_PORT, None, args.duration, args.connections),
        "patgate": strace_counts([gw.proc.pid], PATGATE_PORT, f"x-deploy-personal-token: {token}", args.duration, args.connections),
    }
    gw.stop()
    results["syscalls"] = {k: {"requests": t, "calls": c} for k, (t, c) in measured.items()}
    names = sorted(set().union(*(c for _, c in measured.values())),
                   key=lambda n: -max(c.get(n, 0) / max(t, 1) for t, c in measured.values()))
    rows = []
    for n in names:
        per = [c.get(n, 0) / max(t, 1) for t, c in measured.values()]
        if max(per) >= 0.01:
            rows.append([n] + [f"{p:.2f}" for p in per])
    rows.append(["**total**"] + [f"**{sum(c.values()) / max(t, 1):.2f}**" for t, c in measured.values()])
    return table(
        f"System calls per request (strace -c -f, wrk -t1 -c{args.connections} for {args.duration} s; " +
        ", ".join(f"{k} {t} requests" for k, (t, _) in measured.items()) + ")",
        ["call"] + list(measured), rows,
    )


SCENARIOS = {"hot": scenario_hot, "access": scenario_access, "miss": scenario_miss, "flood": scenario_flood, "memory": scenario_memory, "scaleout": scenario_scaleout,
             "notify": scenario_notify, "revalidation": scenario_revalidation, "inventory": scenario_inventory,
             "syscalls": scenario_syscalls}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS), help="which to run (default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=1_000_000, help="tokens stored for the cache-miss scenario")
    parser.add_argument("--miss-rate", type=int, default=1000, help="requests/s of first-time tokens")
    parser.add_argument("--scaleout-seconds", type=int, default=60)
    parser.add_argument("--valid-rate", type=int, default=0,
                        help="valid clients' rate in the flood scenario (default: half the hot-path maximum)")
    parser.add_argument("--sso-users", type=int, default=10_000, help="SSO users in the re-validation scenario")
    parser.add_argument("--revalidate-every", default="15m", help="sso.revalidate_every in the re-validation scenario")
    parser.add_argument("--postgres", default=os.environ.get("PATGATE_TEST_POSTGRES_URL", ""),
                        help="base PostgreSQL URL (a database may be created there)")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="patgate-bench-")
    # The notifier's scenario needs no HTTP load, nor nginx.
    upstream = nginx_proxy = None
    if set(args.scenarios) - {"notify", "inventory"}:
        upstream = Nginx(work, "upstream", f"""
        server {{
            listen 127.0.0.1:{UPSTREAM_PORT} reuseport backlog=4096;
            location / {{ return 200 "ok"; }}
            location /upload {{ client_max_body_size 0; return 200 "ok"; }}
        }}""", 1)
        nginx_proxy = Nginx(work, "proxy", f"""
        upstream deploy {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive 256; }}
        server {{
            listen 127.0.0.1:{NGINX_PORT} reuseport backlog=4096;
            location / {{
                proxy_pass http://deploy;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
            }}
        }}""", "auto")
    results = {"_nginx_proxy": nginx_proxy}
    tables = []
    try:
        if upstream:
            wait_port(UPSTREAM_PORT)
            wait_port(NGINX_PORT)
        for name in args.scenarios:
            log(f"== {name}")
            tables.append(SCENARIOS[name](work, args, results))
    finally:
        if upstream:
            upstream.stop()
            nginx_proxy.stop()
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    clean = {k: v for k, v in results.items() if not k.startswith("_")}
    clean["machine"] = {"cpus": os.cpu_count(), "kernel": os.uname().release,
                        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip() if shutil.which("nginx") else "",
                        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0] if shutil.which("wrk") else ""}
    clean["args"] = vars(args)
    with open(os.path.join(ROOT, "bench", "results", "latest.json"), "w") as f:
        json.dump(clean, f, indent=1)
    with open(os.path.join(ROOT, "bench", "results", "latest.md"), "w") as f:
        f.write("\n".join(tables) + "\n")


if __name__ == "__main__":
    main()
