"""Instructions per cached-token request on the fast path, counted by callgrind.

A count that a busy machine does not disturb, for comparing two builds of the hot
path (wrk's req/s and CPU time move by more than the 3 % budget when other work runs):

    cargo build --release --bin patgate
    python3 bench/callgrind_hot.py target/release after     # and the same for a build of the base

`patgate serve` (one worker, SQLite) runs under valgrind's callgrind, collecting only
inside the fast path's per-request function (Forwarder::answer: the token check with its
rules, the identity, the exchange with Deploy); a Python stand-in plays Deploy. N
cached-token requests go over one keep-alive connection, and the instructions per
request are the difference between a run of LOW and one of HIGH requests, divided by
HIGH - LOW, so start-up and the first (uncached) request cancel out. Needs valgrind.
"""
import http.client, os, subprocess, sys, tempfile, threading, time, socket, re, signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIN = sys.argv[1]
LABEL = sys.argv[2]
LOW, HIGH = 200, 1200

class Deploy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"deploy"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

up = ThreadingHTTPServer(("127.0.0.1", 0), Deploy)
threading.Thread(target=up.serve_forever, daemon=True).start()
up_port = up.server_address[1]

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait(port):
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("gateway did not start")

work = tempfile.mkdtemp()
port = free_port()
cfg = os.path.join(work, "g.yaml")
open(cfg, "w").write(f"""listen: 127.0.0.1:{port}
workers: 1
upstream:
  url: http://127.0.0.1:{up_port}
  identity:
    allow_header_without_secret: true
database:
  url: sqlite://{work}/g.db
secrets:
  token_key_file: {work}/token.key
log:
  level: warn
""")
pg = os.path.join(BIN, "patgate")
# First start creates the database and key.
p = subprocess.Popen([pg, "--config", cfg, "serve"], stderr=subprocess.DEVNULL)
wait(port); p.send_signal(signal.SIGTERM); p.wait()
token = subprocess.check_output([pg, "--config", cfg, "token", "create", "--user", "bench", "--name", "cg", "--expires", "7d"], stderr=subprocess.DEVNULL).decode().strip()

def run(n):
    out = os.path.join(work, f"cg.{n}")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                          "--toggle-collect=patgate::edge::fastpath::Forwarder::answer*", pg, "--config", cfg, "serve"],
                         stderr=subprocess.DEVNULL)
    wait(port)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(n):
        c.request("GET", "/api/v1/deployit", headers={"x-deploy-personal-token": token})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
    c.close()
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM); p.wait()
    text = open(out).read()
    m = re.search(r"^summary:\s*(\d+)", text, re.M) or re.search(r"^totals:\s*(\d+)", text, re.M)
    return int(m.group(1))

low = run(LOW); high = run(HIGH)
print(f"{LABEL}: Ir in Forwarder::answer: N={LOW}: {low}, N={HIGH}: {high}; per request: {(high - low) / (HIGH - LOW):.0f}")
