#!/usr/bin/env python3
"""Paired CPU per request of two gateway builds against nginx: the three proxies take turns,
round after round, so that a slow moment of the machine hits all three alike.

One command:  python3 benches/load/paired.py BEFORE_BINARY AFTER_BINARY
              (env SCENS=chat,stream,stream/event SECS=3 ROUNDS=5 LATENCY=1)

Needs what `run.py` builds and installs (run it once): the release mock upstream, wrk, nginx.
The mock and wrk run on CPU 0, each proxy on CPU 1; c=64; prints each proxy's median CPU
microseconds per request (and the ratios of the least round of each) and every round's figure.
With LATENCY=1: wrk at c=1 instead, direct to the mock taking its turn too, and each target's
median p50 in ms with what it adds over direct."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R  # noqa: E402  (the load bench: ports, wrk, the mock's request bodies)

A, B = sys.argv[1], sys.argv[2]
SECS = int(os.environ.get("SECS", "3")); ROUNDS = int(os.environ.get("ROUNDS", "5"))
SCENS = os.environ.get("SCENS", "chat,stream,stream/event").split(",")
LATENCY = os.environ.get("LATENCY") == "1"
tmp = tempfile.mkdtemp()
mock_port = R.free_port()
procs = [subprocess.Popen(["taskset", "-c", "0", os.path.join(R.RELEASE, "examples/mock_upstream"), f"127.0.0.1:{mock_port}", "1"], stdout=subprocess.DEVNULL)]
R.wait_http(f"http://127.0.0.1:{mock_port}/stats")
targets = {}
try:
    nginx_port = R.free_port()
    conf = os.path.join(tmp, "nginx.conf")
    open(conf, "w").write(f"""worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;
events {{ worker_connections 8192; }}
http {{ access_log off; upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{nginx_port}; location / {{ proxy_pass http://mock; proxy_http_version 1.1;
    proxy_set_header Connection ""; proxy_buffering off; }} }} }}
""")
    nginx = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", conf, "-g", "daemon off;"]); procs.append(nginx)
    R.wait_http(f"http://127.0.0.1:{nginx_port}/stats")
    targets["nginx"] = (nginx.pid, nginx_port, "mock-model")
    routes = os.path.join(tmp, "routes.toml")
    open(routes, "w").write(f'[backends.mock]\nkind = "openai"\nbase_url = "http://127.0.0.1:{mock_port}/v1"\n[[routes]]\nprefix = "mock/"\nbackend = "mock"\n')
    for name, binary in (("A", A), ("B", B)):
        port = R.free_port()
        gw = subprocess.Popen(["taskset", "-c", "1", binary, "serve", "--config", routes, "--listen", f"127.0.0.1:{port}"], env={**os.environ, "RUST_LOG": "warn"}); procs.append(gw)
        R.wait_http(f"http://127.0.0.1:{port}/health")
        targets[name] = (gw.pid, port, "mock/mock-model")
    if LATENCY:
        targets = {"direct": (procs[0].pid, mock_port, "mock-model"), **targets}
    conns = 1 if LATENCY else 64
    for scen in SCENS:
        res = {n: [] for n in targets}
        for n, (pid, port, model) in targets.items():
            R.wrk(f"http://127.0.0.1:{port}/v1/chat/completions", dict(R.SCENARIOS)[scen] % model, conns, 1)
        for r in range(ROUNDS):
            for n, (pid, port, model) in targets.items():
                c0 = R.cpu_seconds(pid)
                out = R.wrk(f"http://127.0.0.1:{port}/v1/chat/completions", dict(R.SCENARIOS)[scen] % model, conns, SECS)
                c1 = R.cpu_seconds(pid)
                res[n].append(out["p50"] / 1000 if LATENCY else (c1 - c0) / out["requests"] * 1e6)
        med = {n: sorted(v)[len(v) // 2] for n, v in res.items()}
        if LATENCY:
            print(f"{scen}, c=1, median p50 ms (added over direct): " +
                  "  ".join(f"{n} {med[n]:.3f} (+{med[n] - med['direct']:.3f})" for n in med) + "  | rounds " +
                  "; ".join(f"{n}=" + ",".join(f"{x:.3f}" for x in v) for n, v in res.items()), flush=True)
            continue
        # The least of the rounds too: a noisy neighbour only ever adds CPU time.
        low = {n: min(v) for n, v in res.items()}
        print(f"{scen}: median " + "  ".join(f"{n} {med[n]:.1f}" for n in med) +
              f"  | A/nginx {med['A']/med['nginx']:.2f}x  B/nginx {med['B']/med['nginx']:.2f}x"
              f"  | least: A/nginx {low['A']/low['nginx']:.2f}x  B/nginx {low['B']/low['nginx']:.2f}x  | rounds " +
              "; ".join(f"{n}=" + ",".join(f"{x:.0f}" for x in v) for n, v in res.items()), flush=True)
finally:
    for p in procs:
        p.terminate()
