#!/usr/bin/env python3
"""Side-by-side load bench: direct to a mock upstream vs through Switchyard (and nginx, the floor).

One command:  python3 benches/load/run.py [--seconds 10] [--no-nginx]

It installs wrk (and nginx) from Debian when missing, builds the gateway, the mock upstream and
the stream probe in release mode, pins the proxy under test to CPU 1 and the load generator and
mock to CPU 0, and prints one Markdown table measured in one run:
  - non-streaming chat and streaming chat (20 chunks) at concurrency 1, 64, 256: requests/s,
    p50 / p99 / p99.9 latency (to the end of the stream), the added latency (proxy minus direct)
    and the proxy's CPU time per request. Streams in two shapes: "stream", the whole stream in
    one HTTP chunk (batched), and "stream/event", one HTTP chunk per event as inference servers
    send tokens (the mock writes them as fast as the socket takes them);
  - time to first event of a stream (stream probe, 2 ms between upstream chunks), and a
    real-shaped stream (200 events, 2 ms apart): time to first event and the RSS per open stream
    of a fresh gateway process while the probe's streams are open;
  - the gateway's RSS idle, under load, and with 2,000 streams held open;
  - a second gateway, "switchyard+auth", with [auth] on (SQLite store, one gateway key minted
    through the admin API and sent by wrk): its CPU per request minus the first gateway's is the
    cost of the key check on a cache hit (chat and stream rows; not in the first-event probe);
  - a third gateway, "switchyard+metrics", with [metrics] on (and scraped once a second, as a
    busy Prometheus would): its CPU per request minus the first gateway's is the cost of
    recording the metrics (timing headers are on in every gateway).
  - "switchyard+usage", with `[usage] log` (a JSONL file in the temp dir; streams ask the
    upstream for usage and the extra chunk is removed), and "switchyard+limits", with a route
    `rate_limit` on all three kinds set too high to refuse anything: their CPU per request minus
    the plain row's is the cost of usage accounting and of the rate-limit check (issue 15).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/switchyard-target"))
RELEASE = os.path.join(TARGET, "release")
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONCURRENCY = [1, 64, 256]
CHAT = '{"model":"%s","messages":[{"role":"user","content":"Say something short."}],"max_tokens":32}'
STREAM = '{"model":"%s","stream":true,"messages":[{"role":"user","content":"Say something short."}]}'
STREAM_PER_EVENT = '{"model":"%s","stream":true,"mock_chunked":true,"messages":[{"role":"user","content":"Say something short."}]}'
PACED = '{"model":"%s","stream":true,"mock_pause_ms":%d,"messages":[{"role":"user","content":"x"}]}'
# A real-shaped stream: 200 events 2 ms apart (a 400 ms answer at 500 tokens/s).
REAL = '{"model":"%s","stream":true,"mock_pause_ms":2,"mock_events":200,"messages":[{"role":"user","content":"x"}]}'
SCENARIOS = (("chat", CHAT), ("stream", STREAM), ("stream/event", STREAM_PER_EVENT))


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_tools(nginx):
    wanted = ["wrk"] + (["nginx"] if nginx else [])
    missing = [t for t in wanted if shutil.which(t) is None and not os.path.exists("/usr/sbin/" + t)]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        sh(*sudo, "apt-get", "update", "-qq")
        sh(*sudo, "apt-get", "install", "-y", "-qq", *missing, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.05)
    sys.exit(f"{url} did not come up")


def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid):
    """CPU time of a process and its children (nginx serves from worker processes)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat(entry)
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def served(mock_port):
    return int(urllib.request.urlopen(f"http://127.0.0.1:{mock_port}/stats").read())


def wrk(url, body, conns, seconds, key=None):
    env = {**os.environ, "WRK_BODY": body, **({"WRK_AUTH": key} if key else {})}
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s",
         os.path.join(ROOT, "benches/load/wrk.lua"), url],
        check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def probe(url, body, conns, seconds):
    out = subprocess.run(
        ["taskset", "-c", "0", os.path.join(RELEASE, "examples/stream_probe"), url, str(conns), str(seconds), body],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


class RssSampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.1)


ADMIN_TOKEN = "load-bench-admin-token-0123456789"


def start_auth_gateway(tmp, mock_port, port):
    """A gateway with [auth] on a SQLite store, and a gateway key minted through the admin API."""
    routes = os.path.join(tmp, "routes-auth.toml")
    with open(routes, "w") as f:
        f.write(f'[store]\nurl = "sqlite://keys.db"\n[auth]\nmaster_key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="\n'
                f'admin_token = "{ADMIN_TOKEN}"\n'
                f'[backends.mock]\nkind = "openai"\nbase_url = "http://127.0.0.1:{mock_port}/v1"\n'
                f'[[routes]]\nprefix = "mock/"\nbackend = "mock"\n')
    gw = subprocess.Popen(["taskset", "-c", "1", os.path.join(RELEASE, "switchyard"), "serve", "--config", routes,
                           "--listen", f"127.0.0.1:{port}"], env={**os.environ, "RUST_LOG": "warn"})
    wait_http(f"http://127.0.0.1:{port}/health")

    def admin(path, body):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/v1{path}", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                              "Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req).read())

    project = admin("/projects", {"name": "bench", "models": ["mock/"]})
    return gw, admin(f"/projects/{project['id']}/keys", {"name": "wrk"})["key"]


def start_metrics_gateway(tmp, mock_port, port):
    """A gateway with [metrics] on, and a thread scraping it once a second until stopped."""
    routes = os.path.join(tmp, "routes-metrics.toml")
    with open(routes, "w") as f:
        f.write(f'[metrics]\n[backends.mock]\nkind = "openai"\nbase_url = "http://127.0.0.1:{mock_port}/v1"\n'
                f'[[routes]]\nprefix = "mock/"\nbackend = "mock"\n')
    gw = subprocess.Popen(["taskset", "-c", "1", os.path.join(RELEASE, "switchyard"), "serve", "--config", routes,
                           "--listen", f"127.0.0.1:{port}"], env={**os.environ, "RUST_LOG": "warn"})
    wait_http(f"http://127.0.0.1:{port}/metrics")
    stop = threading.Event()

    def scrape():
        while not stop.wait(1.0):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            except Exception:
                pass

    threading.Thread(target=scrape, daemon=True).start()
    return gw, stop


def start_plain_gateway(tmp, mock_port, port, name, extra, route_extra):
    """A gateway like the plain one, with `extra` top-level tables and `route_extra` route keys."""
    routes = os.path.join(tmp, f"routes-{name}.toml")
    with open(routes, "w") as f:
        f.write(f'{extra}[backends.mock]\nkind = "openai"\nbase_url = "http://127.0.0.1:{mock_port}/v1"\n'
                f'[[routes]]\nprefix = "mock/"\nbackend = "mock"\n{route_extra}')
    gw = subprocess.Popen(["taskset", "-c", "1", os.path.join(RELEASE, "switchyard"), "serve", "--config", routes,
                           "--listen", f"127.0.0.1:{port}"], env={**os.environ, "RUST_LOG": "warn"})
    wait_http(f"http://127.0.0.1:{port}/health")
    return gw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--streams-held", type=int, default=2000)
    args = ap.parse_args()
    use_nginx = not args.no_nginx
    ensure_tools(use_nginx)
    sh("cargo", "build", "--release", "--quiet", "--bin", "switchyard", "--example", "mock_upstream",
       "--example", "stream_probe", cwd=ROOT, env={**os.environ, "CARGO_TARGET_DIR": TARGET})

    procs, tmp = [], tempfile.mkdtemp(prefix="switchyard-load-")
    try:
        mock_port, gw_port, nginx_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(["taskset", "-c", "0", os.path.join(RELEASE, "examples/mock_upstream"),
                                       f"127.0.0.1:{mock_port}", "1"], stdout=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{mock_port}/stats")
        routes = os.path.join(tmp, "routes.toml")
        with open(routes, "w") as f:
            f.write(f'[backends.mock]\nkind = "openai"\nbase_url = "http://127.0.0.1:{mock_port}/v1"\n'
                    f'[[routes]]\nprefix = "mock/"\nbackend = "mock"\n')
        gw = subprocess.Popen(["taskset", "-c", "1", os.path.join(RELEASE, "switchyard"), "serve", "--config", routes,
                               "--listen", f"127.0.0.1:{gw_port}"], env={**os.environ, "RUST_LOG": "warn"})
        procs.append(gw)
        wait_http(f"http://127.0.0.1:{gw_port}/health")
        time.sleep(0.5)
        idle_rss = rss_kib(gw.pid)
        auth_port = free_port()
        auth_gw, key = start_auth_gateway(tmp, mock_port, auth_port)
        procs.append(auth_gw)
        metrics_port = free_port()
        metrics_gw, stop_scraping = start_metrics_gateway(tmp, mock_port, metrics_port)
        procs.append(metrics_gw)
        targets = [("direct", f"http://127.0.0.1:{mock_port}/v1/chat/completions", "mock-model", None)]
        if use_nginx:
            conf = os.path.join(tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(f"""worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;
events {{ worker_connections 8192; }}
http {{ access_log off; upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{nginx_port}; location / {{ proxy_pass http://mock; proxy_http_version 1.1;
    proxy_set_header Connection ""; proxy_buffering off; }} }} }}
""")
            nginx = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", conf, "-g", "daemon off;"])
            procs.append(nginx)
            wait_http(f"http://127.0.0.1:{nginx_port}/stats")
            targets.append(("nginx", f"http://127.0.0.1:{nginx_port}/v1/chat/completions", "mock-model", nginx.pid))
        targets.append(("switchyard", f"http://127.0.0.1:{gw_port}/v1/chat/completions", "mock/mock-model", gw.pid))
        keyed = {"switchyard+auth": key}
        wrk_targets = targets + [("switchyard+auth", f"http://127.0.0.1:{auth_port}/v1/chat/completions",
                                  "mock/mock-model", auth_gw.pid),
                                 ("switchyard+metrics", f"http://127.0.0.1:{metrics_port}/v1/chat/completions",
                                  "mock/mock-model", metrics_gw.pid)]
        # Issue 15: usage accounting on, and rate limits on (never refusing), against the plain row.
        for name, extra, route_extra in (
            ("switchyard+usage", f'[usage]\nlog = "{tmp}/usage.jsonl"\n', ""),
            ("switchyard+limits", "", "rate_limit = { requests_per_minute = 60000000, "
                                      "tokens_per_minute = 60000000, max_concurrent = 1000000 }\n"),
        ):
            port = free_port()
            extra_gw = start_plain_gateway(tmp, mock_port, port, name.split("+")[1], extra, route_extra)
            procs.append(extra_gw)
            wrk_targets.append((name, f"http://127.0.0.1:{port}/v1/chat/completions", "mock/mock-model",
                                extra_gw.pid))

        sampler = RssSampler(gw.pid)
        sampler.start()
        rows = []
        for scenario, template in SCENARIOS:
            for c in CONCURRENCY:
                results = {}
                for name, url, model, pid in wrk_targets:
                    body = template % model
                    wrk(url, body, c, 2, keyed.get(name))  # warm-up
                    cpu0, seen0 = (cpu_seconds(pid) if pid else 0), served(mock_port)
                    r = wrk(url, body, c, args.seconds, keyed.get(name))
                    r["cpu_us"] = (cpu_seconds(pid) - cpu0) * 1e6 / max(r["requests"], 1) if pid else None
                    r["upstream_saw"] = served(mock_port) - seen0
                    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
                    results[name] = r
                rows.append((scenario, c, results))
        load_rss = sampler.peak
        stop_scraping.set()
        sampler.running = False
        first = []
        for c in CONCURRENCY:
            res = {name: probe(url, PACED % (model, 2), c, max(3, args.seconds // 2)) for name, url, model, _ in targets}
            first.append((c, res))

        # Memory in a fresh gateway: idle, then with N streams held open (the upstream pauses
        # 60 s between chunks), so the per-stream figure is not hidden by memory the allocator
        # kept from the load above; then, in another fresh one, the real-shaped stream.
        gw.terminate()
        gw.wait(timeout=10)
        gw, base_rss = fresh_gateway(routes, gw_port)
        procs.append(gw)
        hold = subprocess.Popen([os.path.join(RELEASE, "examples/stream_probe"), f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                                 str(args.streams_held), "hold", PACED % ("mock/mock-model", 60000)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = hold.stdout.readline()
        time.sleep(1)
        held_rss = rss_kib(gw.pid)
        hold.stdin.close()
        hold.wait(timeout=30)
        gw.terminate()
        gw.wait(timeout=10)
        gw, real_base = fresh_gateway(routes, gw_port)
        procs.append(gw)
        fresh = [(name, url, model, gw.pid if name == "switchyard" else pid) for name, url, model, pid in targets]
        real = real_shaped(fresh, gw.pid, real_base, max(3, args.seconds // 2))
        report(rows, first, idle_rss, load_rss, base_rss, held_rss, line.strip(), args, [t[0] for t in wrk_targets],
               [t[0] for t in targets])
        report_real(real, [t[0] for t in targets])
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def fresh_gateway(routes, port):
    """A new gateway process on `port`, and its RSS once idle."""
    gw = subprocess.Popen(["taskset", "-c", "1", os.path.join(RELEASE, "switchyard"), "serve", "--config", routes,
                           "--listen", f"127.0.0.1:{port}"], env={**os.environ, "RUST_LOG": "warn"})
    wait_http(f"http://127.0.0.1:{port}/health")
    time.sleep(0.5)
    return gw, rss_kib(gw.pid)


def real_shaped(targets, gw_pid, base_rss, seconds):
    """The real-shaped stream through each target: time to first event, and for the gateway (a
    fresh process, RSS `base_rss` before any request) its peak RSS above that level while c
    streams are open, per stream."""
    out = []
    for c in CONCURRENCY:
        res = {}
        for name, url, model, pid in targets:
            sampler = RssSampler(gw_pid)
            sampler.start()
            res[name] = probe(url, REAL % model, c, seconds)
            sampler.running = False
            sampler.join()
            if pid == gw_pid:
                res[name]["kib_per_stream"] = max(sampler.peak - base_rss, 0) / c
        out.append((c, res))
    return out


def report_real(real, names):
    print("\nReal-shaped stream (200 events, 2 ms apart), ms; the gateway's RSS per open stream is its peak "
          "RSS during the cell minus its RSS as a fresh process, over c:\n")
    print("| c | target | streams/s | first p50 | first p99 | added first p50 | end p50 | RSS KiB/stream | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c, res in real:
        d = res["direct"]
        for name in names:
            r = res[name]
            added = "" if name == "direct" else ms(r["first_p50"] - d["first_p50"])
            rss = f"{r['kib_per_stream']:.1f}" if "kib_per_stream" in r else ""
            print(f"| {c} | {name} | {r['requests'] / r['seconds']:.0f} | {ms(r['first_p50'])} | {ms(r['first_p99'])} | "
                  f"{added} | {ms(r['end_p50'])} | {rss} | {r['errors']} |")


def ms(us):
    return f"{us / 1000:.3f}"


def report(rows, first, idle_rss, load_rss, base_rss, held_rss, held_line, args, names, probe_names):
    proxies = [n for n in names if n != "direct"]
    print(f"\n## Load bench, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; proxies pinned to CPU 1, "
          f"wrk (1 thread) and mock to CPU 0; {args.seconds} s per cell after a 2 s warm-up\n")
    print("Latency in ms (to the end of the response or stream); added = proxy minus direct; CPU = proxy CPU time per request.\n")
    print("| scenario | c | target | req/s | % of direct | p50 | p99 | p99.9 | added p50 | added p99 | CPU µs/req | errors | upstream saw |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for scenario, c, res in rows:
        d = res["direct"]
        for name in names:
            r = res[name]
            added = "" if name == "direct" else f"{ms(r['p50'] - d['p50'])} | {ms(r['p99'] - d['p99'])}"
            added = added or " | "
            cpu = "" if r["cpu_us"] is None else f"{r['cpu_us']:.0f}"
            pct = "" if name == "direct" else f"{100 * r['rps'] / d['rps']:.0f}%"
            print(f"| {scenario} | {c} | {name} | {r['rps']:.0f} | {pct} | {ms(r['p50'])} | {ms(r['p99'])} | {ms(r['p999'])} | {added} | {cpu} | "
                  f"{r['errors'] + r['status_errors']} | {r['upstream_saw']} |")
    print("\nTime to first event of a stream (stream probe, upstream pauses 2 ms between its 20 chunks), ms:\n")
    print("| c | target | streams/s | first p50 | first p99 | first p99.9 | added first p50 | added first p99 | end p50 | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for c, res in first:
        d = res["direct"]
        for name in probe_names:
            r = res[name]
            added = " | " if name == "direct" else f"{ms(r['first_p50'] - d['first_p50'])} | {ms(r['first_p99'] - d['first_p99'])}"
            print(f"| {c} | {name} | {r['requests'] / r['seconds']:.0f} | {ms(r['first_p50'])} | {ms(r['first_p99'])} | {ms(r['first_p999'])} | "
                  f"{added} | {ms(r['end_p50'])} | {r['errors']} |")
    n = json.loads(held_line)["held"] if held_line else 0
    per_stream = (held_rss - base_rss) / max(n, 1)
    print(f"\nGateway RSS: idle {idle_rss / 1024:.1f} MiB; peak under load {load_rss / 1024:.1f} MiB; fresh process "
          f"{base_rss / 1024:.1f} MiB, with {n or 'FAILED: no'} streams open {held_rss / 1024:.1f} MiB "
          f"= {per_stream:.1f} KiB per open stream.")


if __name__ == "__main__":
    main()
