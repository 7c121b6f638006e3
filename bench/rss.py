"""7: RSS per symbol actor at 1,000 and 5,000 symbols vs a bare pykka actor.

Each measurement runs in a fresh child process (python -m bench.rss <kind> <n>) so that
one does not inherit the other's heap."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from typing import Any

from bench.common import QUICK


def rss_bytes() -> int:
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(kind: str, n: int) -> float:
    import pykka

    from bench.common import BareActor, stop_refs

    if kind == "bare":
        BareActor.start(None, [0]).stop()  # warm imports and the first thread
        gc.collect()
        before = rss_bytes()
        refs = [BareActor.start(None, [0]) for _ in range(n)]
        gc.collect()
        after = rss_bytes()
        stop_refs(refs)
    else:
        from bench.world import key, make_world

        w = make_world(n)
        w.sup.state(key(n + 1))
        gc.collect()
        before = rss_bytes()
        for i in range(n):
            w.sup.state(key(i))  # spawn + load, idle actor with an empty symbol state
        gc.collect()
        after = rss_bytes()
        w.close()
    pykka.ActorRegistry.stop_all()
    return (after - before) / n


def run() -> dict[str, Any]:
    sizes = [1_000, 5_000]
    out: dict[str, Any] = {"rss_symbols": sizes}
    for n in sizes:
        per: dict[str, float] = {}
        for kind in ("bare", "actor"):
            p = subprocess.run(
                [sys.executable, "-m", "bench.rss", kind, str(n)],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            per[kind] = json.loads(p.stdout.strip().splitlines()[-1])
        out[f"rss_per_actor_{n}_kib"] = per["actor"] / 1024
        out[f"rss_per_bare_actor_{n}_kib"] = per["bare"] / 1024
        out[f"rss_per_actor_{n}_ratio"] = per["actor"] / per["bare"]
    out["rss_per_actor_ratio"] = max(out[f"rss_per_actor_{n}_ratio"] for n in sizes)
    out["rss_quick"] = QUICK
    return out


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))))
