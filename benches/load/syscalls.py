#!/usr/bin/env python3
"""System calls of the gateway per request, a measure that contention does not move.

One command:  python3 benches/load/syscalls.py [--profile release|dev] [--seconds 3] [--workers N]
                                              [--gateway PATH]

It builds the gateway, the mock upstream and the stream probe (release by default; the counts
are the same in a debug build, which is quicker to build), starts the mock on CPU 0 and the
gateway on CPU 1, attaches `strace -c -f` to the gateway and runs the stream probe (one client
at a time) for each shape below; then divides strace's call counts by the requests the mock
served. Shapes: chat; a 20-event stream sent in one HTTP chunk ("stream"); the same stream with
one HTTP chunk per event ("stream/event"); a real-shaped stream, 200 events 2 ms apart.
`--gateway` runs another build of the gateway (say, one of the previous commit) against the
same mock and probe, for a before/after comparison.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the load bench: builds, ports, the mock's request bodies)

SHAPES = (("chat", run.CHAT), ("stream", run.STREAM), ("stream/event", run.STREAM_PER_EVENT), ("real-shaped", run.REAL))
SHOWN = ("sendto", "writev", "recvfrom", "write", "read", "epoll_wait", "epoll_pwait", "epoll_ctl", "futex")


def strace_counts(pid, drive):
    """Runs `drive()` with strace counting the calls of every thread of `pid`."""
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out.name, "-p", str(pid)], stderr=subprocess.DEVNULL)
        time.sleep(1)  # strace attaches to every thread before the first request
        served = drive()
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        counts = {}
        for line in open(out.name):
            fields = line.split()
            # "% time  seconds  usecs/call  calls  [errors]  syscall"
            if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1].isidentifier():
                counts[fields[-1]] = int(fields[3])
        return counts, served


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", choices=("release", "dev"), default="release")
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="gateway workers (default: its own, 1 when pinned)")
    ap.add_argument("--gateway", help="the gateway binary to measure (default: the one this command builds)")
    args = ap.parse_args()
    if subprocess.run(["which", "strace"], capture_output=True).returncode != 0:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        run.sh(*sudo, "apt-get", "install", "-y", "-qq", "strace")
    out_dir = os.path.join(run.TARGET, "release" if args.profile == "release" else "debug")
    build = ["cargo", "build", "--quiet", "--bin", "switchyard", "--example", "mock_upstream", "--example", "stream_probe"]
    run.sh(*build, *(["--release"] if args.profile == "release" else []), cwd=run.ROOT,
           env={**os.environ, "CARGO_TARGET_DIR": run.TARGET})
    procs, tmp = [], tempfile.mkdtemp(prefix="switchyard-syscalls-")
    try:
        mock_port, gw_port = run.free_port(), run.free_port()
        procs.append(subprocess.Popen(["taskset", "-c", "0", os.path.join(out_dir, "examples/mock_upstream"),
                                       f"127.0.0.1:{mock_port}", "1"], stdout=subprocess.DEVNULL))
        run.wait_http(f"http://127.0.0.1:{mock_port}/stats")
        routes = os.path.join(tmp, "routes.toml")
        with open(routes, "w") as f:
            workers = f"[server]\nworkers = {args.workers}\n" if args.workers else ""
            f.write(f'{workers}[backends.mock]\nkind = "openai"\nbase_url = "http://127.0.0.1:{mock_port}/v1"\n'
                    f'[[routes]]\nprefix = "mock/"\nbackend = "mock"\n')
        gateway = args.gateway or os.path.join(out_dir, "switchyard")
        gw = subprocess.Popen(["taskset", "-c", "1", gateway, "serve", "--config", routes,
                               "--listen", f"127.0.0.1:{gw_port}"], env={**os.environ, "RUST_LOG": "warn"})
        procs.append(gw)
        run.wait_http(f"http://127.0.0.1:{gw_port}/health")
        url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        print(f"\nGateway system calls per request ({args.profile} build, strace -c -f -p PID, "
              f"stream_probe at c=1 for {args.seconds} s per shape; the mock's count of requests served)\n")
        print("| shape | requests | " + " | ".join(SHOWN) + " |")
        print("|---|---|" + "---|" * len(SHOWN))
        for name, template in SHAPES:
            body = template % "mock/mock-model"

            def drive():
                seen = run.served(mock_port)
                subprocess.run([os.path.join(out_dir, "examples/stream_probe"), url, "1", str(args.seconds), body],
                               check=True, capture_output=True)
                return run.served(mock_port) - seen

            counts, served = strace_counts(gw.pid, drive)
            per = [f"{counts.get(s, 0) / max(served, 1):.1f}" for s in SHOWN]
            print(f"| {name} | {served} | " + " | ".join(per) + " |")
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=10)


if __name__ == "__main__":
    main()
