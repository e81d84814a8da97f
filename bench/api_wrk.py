"""The API under `wrk` (Debian's package) beside a bare Starlette hello-world served with the same
uvicorn options (`api.__main__.server_options`), in the same run, one after the other:

  - cached market detail and cached market list at 8 and 32 connections: req/s, share of the
    hello-world's req/s, p99;
  - the uncached list (cache off) at 256 connections with a pool of 10: every request answered
    (2xx, or 503 with Retry-After), none hung (wrk's timeouts), the process healthy afterwards.

Servers pinned to CPU 0, wrk to CPU 1; 10 s per run (`--seconds`). Rate limits are off (every
request would be anonymous and capped at 100 / 15 min).

    .venv/bin/python -m bench.api_wrk            # prints the table for docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import urllib.request

from bench.api_http import JWT, api_config, process, scenario_db, wait_http, warm
from tests.chain import free_port

PY = sys.executable
WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("STATUS non2xx=%d timeouts=%d\\n", summary.errors.status, summary.errors.timeout))
end
"""


def serve_hello(port: int) -> None:
    import uvicorn

    from api.__main__ import server_options
    from api.settings import load_settings
    from bench.api_http import _hello_app

    settings = load_settings(
        {
            "database": {"dsn": "postgresql://unused"},
            "chain": {"chain_id": 31337, "rpc_urls": ["http://127.0.0.1:1"]},
            "api": {"port": port},
        },
        environ={"GL_API_JWT_SECRET": JWT},
    )
    uvicorn.run(_hello_app(), **server_options(settings))  # type: ignore[arg-type]


def wrk(url: str, conns: int, seconds: int) -> dict[str, float]:
    """One wrk run: req/s, p99 (ms), non-2xx answers and socket timeouts."""
    script = "/tmp/gl_wrk_done.lua"
    with open(script, "w") as f:
        f.write(WRK_LUA)
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            script,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    status = re.search(r"STATUS non2xx=(\d+) timeouts=(\d+)", out)
    assert status is not None, out
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "rps": rps,
        "p99_ms": float(p99.group(1)) * scale,
        "non2xx": int(status.group(1)),
        "timeouts": int(status.group(2)),
        "requests": total,
    }


def run(seconds: int) -> list[tuple[str, int, dict[str, float]]]:
    rows: list[tuple[str, int, dict[str, float]]] = []
    with scenario_db("gl_bench_wrk") as dsn:
        hello = free_port()
        with process([PY, "-m", "bench.api_wrk", "--serve-hello", str(hello)]):
            wait_http(f"http://127.0.0.1:{hello}/")
            for c in (8, 32):
                rows.append(("hello-world (bare Starlette)", c, wrk(f"http://127.0.0.1:{hello}/", c, seconds)))
        port = free_port()
        cfg = api_config(dsn, port, False)
        with process([PY, "-m", "api", "--config", cfg, "--log-level", "warning"], {"GL_API_JWT_SECRET": JWT}):
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/health")
            warm(base, ("/v1/markets/1", "/v1/markets?limit=20"))
            for path, label in (("/v1/markets/1", "detail"), ("/v1/markets?limit=20", "list")):
                for c in (8, 32):
                    rows.append((f"GET {path} (cached {label})", c, wrk(base + path, c, seconds)))
        os.unlink(cfg)
        port = free_port()
        cfg = api_config(dsn, port, False)
        with open(cfg) as f:
            text = f.read().replace("pool_max = 4", "pool_max = 10\ncache_enabled = false")
        with open(cfg, "w") as f:
            f.write(text)
        with process([PY, "-m", "api", "--config", cfg, "--log-level", "warning"], {"GL_API_JWT_SECRET": JWT}):
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/health")
            load = wrk(base + "/v1/markets?limit=20", 256, seconds)
            rows.append(("GET /v1/markets?limit=20 (uncached, pool 10)", 256, load))
            with urllib.request.urlopen(base + "/v1/markets?limit=20", timeout=10) as r:
                assert r.status == 200, "unhealthy after the load"
        os.unlink(cfg)
    return rows


def table(rows: list[tuple[str, int, dict[str, float]]]) -> str:
    hello = {c: r["rps"] for n, c, r in rows if n.startswith("hello")}
    lines = [
        "| target | conns | req/s | vs hello | p99 | non-2xx | timeouts |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n, c, r in rows:
        share = f"{100 * r['rps'] / hello[c]:.0f} %" if c in hello else "—"
        errors = f"{int(r['non2xx'])} | {int(r['timeouts'])}"
        lines.append(f"| {n} | {c} | {r['rps']:,.0f} | {share} | {r['p99_ms']:.1f} ms | {errors} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--serve-hello", type=int)
    p.add_argument("--seconds", type=int, default=10)
    args = p.parse_args()
    if args.serve_hello:
        serve_hello(args.serve_hello)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk (Debian's package)")
    print(table(run(args.seconds)))
    print(f"\n(command: {PY} -m bench.api_wrk --seconds {args.seconds})")


if __name__ == "__main__":
    main()
