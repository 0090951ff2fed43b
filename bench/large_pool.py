"""Wall time and peak memory of select_xrays.py with every label-free method on large synthetic pools.

    python3 bench/large_pool.py --pools 10000,30000,100000 --dims 512 -k 50

For each pool size and embedding size a synthetic pool is written once (CSV + HDF5 under
--work_dir): a mixture of 32 Gaussian clusters, the shape of real embeddings' clusters rather than
a uniform cloud. Then each method runs as its own ``select_xrays.py --method M`` process, one at a
time, so that its peak resident memory (ru_maxrss of that process, from os.wait4) is its own and
includes reading the pool, as a user's run does. A process over --timeout is stopped and reported
as such; a method that select_xrays.py refuses for memory is reported with its one-line message.
Writes results.json to --out and the markdown table to docs/results/large_pool.md (--fragment).
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.embedding_writer import write_embeddings  # noqa: E402
from models import blocked_baselines  # noqa: E402
from models.baseline_memory import peak_bytes as estimated_peak_bytes  # noqa: E402
from models.baselines import BASELINE_METHODS, RANDOM_STREAMS  # noqa: E402
from models.pool_blocks import row_blocks  # noqa: E402
from utils.seeding import BASELINE_SELECTION  # noqa: E402
from utils.results_fragment import command_line, fragment_text, machine_description  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTERS = 32  # Gaussian clusters of the synthetic pool
ROWS_PER_WRITE = 50_000  # embeddings generated at a time
TARGET_POOL, TARGET_SECONDS, TARGET_BYTES = 100_000, 300, 6 * 2**30  # issue 23: 100,000 X-rays, 5 minutes, 6 GB


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pools", default="10000,30000,100000", help="pool sizes, comma-separated")
    parser.add_argument("--dims", default="512", help="embedding sizes, comma-separated")
    parser.add_argument("--methods", default=",".join(BASELINE_METHODS), help="methods, comma-separated")
    parser.add_argument("-k", "--k", type=int, default=50, help="X-rays to select")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a method's process is stopped")
    parser.add_argument("--max_memory", default=None, help="passed to select_xrays.py (default: its own)")
    parser.add_argument("--work_dir", default="/tmp/large_pool_bench", help="where the synthetic pools are written")
    parser.add_argument("--out", default="bench/results/large_pool", help="folder of results.json")
    parser.add_argument("--fragment", default="docs/results/large_pool.md",
                        help="markdown table for the docs (results convention); '' for none")
    parser.add_argument("--update", action="store_true",
                        help="keep the other entries of an earlier --out/results.json, replacing those measured now")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--facility_check", type=int, default=0, metavar="POOL",
                        help="also compare facility location's sampled objective (pools above "
                             f"{blocked_baselines.FACILITY_CLIENTS_MAX:,}) with the exact greedy on a synthetic pool "
                             "of POOL X-rays of the first --dims, in this process (exact: time grows with POOL^2)")
    return parser


def synthetic_pool(pool, dim, seed):
    """(pool, dim) float32: a mixture of CLUSTERS Gaussian clusters, the same for the same arguments."""
    rng = np.random.default_rng([seed, pool, dim])
    centres = rng.normal(size=(CLUSTERS, dim)).astype(np.float32)
    embeddings = np.empty((pool, dim), dtype=np.float32)
    for start in range(0, pool, ROWS_PER_WRITE):
        rows = min(ROWS_PER_WRITE, pool - start)
        embeddings[start:start + rows] = (centres[rng.integers(CLUSTERS, size=rows)]
                                          + rng.normal(size=(rows, dim)).astype(np.float32))
    return embeddings


def write_pool(path, pool, dim, seed):
    """A synthetic pool CSV with its HDF5 beside it (skipped when already there)."""
    if os.path.exists(path) and os.path.exists(path[:-4] + ".hdf5"):
        return
    embeddings = synthetic_pool(pool, dim, seed)
    write_embeddings(path[:-4] + ".hdf5", embeddings, {"note": "synthetic pool of bench/large_pool.py"})
    pd.DataFrame({"Path": [f"synthetic/{i:07d}.jpg" for i in range(pool)]}).to_csv(path, index=False)


def run_method(method, pool_csv, k, timeout, max_memory, out_csv):
    """(status, seconds, peak bytes, message) of one select_xrays.py process."""
    command = [sys.executable, os.path.join(ROOT, "select_xrays.py"), "--pool_csv", pool_csv, "--method", method,
               "-k", str(k), "--out", out_csv, "--overwrite"]
    if max_memory:
        command += ["--max_memory", max_memory]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    status = "ok"
    while True:
        pid, code, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > timeout:
            os.killpg(process.pid, signal.SIGKILL)
            pid, code, usage = os.wait4(process.pid, 0)
            status = "timeout"
            break
        time.sleep(0.2)
    seconds = time.monotonic() - started
    errors = process.stderr.read().strip().splitlines()
    message = next((line for line in reversed(errors) if line.startswith("error:")), errors[-1] if errors else "")
    if status == "ok" and os.waitstatus_to_exitcode(code) != 0:
        status = "refused" if os.waitstatus_to_exitcode(code) == 2 else f"failed ({os.waitstatus_to_exitcode(code)})"
    return status, seconds, usage.ru_maxrss * 1024, message


def cell(result):
    """'88 s, 1.6 GB (2.2)': time, measured peak and, in brackets, models/baseline_memory.py's estimate."""
    estimate = f" ({result['estimate_bytes'] / 2**30:.1f})" if "estimate_bytes" in result else ""
    if result["status"] == "ok":
        return f"{result['seconds']:.0f} s, {result['peak_bytes'] / 2**30:.1f} GB{estimate}"
    if result["status"] == "timeout":
        return f"> {result['seconds']:.0f} s (stopped at {result['peak_bytes'] / 2**30:.1f} GB){estimate}"
    return result["status"] + estimate


def table(results, methods):
    lines = ["| pool | D | " + " | ".join(methods) + " |", "| ---: | ---: |" + " ---: |" * len(methods)]
    for (pool, dim), by_method in results.items():
        lines.append(f"| {pool:,} | {dim} | " + " | ".join(cell(by_method[m]) if m in by_method else ""
                                                          for m in methods) + " |")
    notes = [f"* {m} at {pool:,} × {dim}: {r['message']}" for (pool, dim), by in results.items()
             for m, r in by.items() if r["status"] not in ("ok", "timeout") and r["message"]]
    return "\n".join(lines + ([""] + notes if notes else []))


def summary(results):
    """Sentences computed from the table: the issue's targets, the estimate against the measured peaks."""
    rows = [(pool, dim, method, r) for (pool, dim), by in results.items() for method, r in by.items()]
    lines = []
    at_target = [(dim, m, r) for pool, dim, m, r in rows if pool == TARGET_POOL]
    for dim in sorted({d for d, _, _ in at_target}):
        missed = [f"{m} ({cell(r)})" for d, m, r in at_target if d == dim and not
                  (r["status"] == "ok" and r["seconds"] < TARGET_SECONDS and r["peak_bytes"] < TARGET_BYTES)]
        met = len([m for d, m, _ in at_target if d == dim]) - len(missed)
        lines.append(f"* {TARGET_POOL:,} X-rays of size {dim}: {met} method(s) within {TARGET_SECONDS // 60} minutes "
                     f"and {TARGET_BYTES / 2**30:.0f} GB" + (f"; not: {', '.join(missed)}." if missed else "."))
    measured = [(pool, dim, m, r) for pool, dim, m, r in rows if r["status"] in ("ok", "timeout")]
    if measured:
        pool, dim, method, r = max(measured, key=lambda row: row[3]["peak_bytes"])
        lines.append(f"* Largest measured peak: {r['peak_bytes'] / 2**30:.1f} GB ({method}, {pool:,} × {dim}).")
        under = [f"{m} at {p:,} × {d} ({r['peak_bytes'] / 2**30:.2f} GB measured, {r['estimate_bytes'] / 2**30:.2f} "
                 "estimated)" for p, d, m, r in measured if r.get("estimate_bytes", np.inf) < r["peak_bytes"]]
        lines.append("* The memory estimate that `--max_memory` is checked against is above every measured peak."
                     if not under else f"* The memory estimate is **below** the measured peak for: {'; '.join(under)}.")
    loads = [r["load_before"] for *_, r in rows if "load_before" in r]
    if loads:
        lines.append(f"* 1-minute load average before each run: {min(loads):.1f} to {max(loads):.1f} "
                     f"(the methods themselves use {os.cpu_count()} threads).")
    return "\n".join(lines)


def facility_objective(x, picks):
    """F(S) = sum over the whole pool of the best cosine similarity to a pick (x L2-normalised)."""
    return float(sum((x[part] @ x[picks].T).amax(1).sum() for part in row_blocks(len(x), len(picks), 4)))


def facility_check(pool, dim, k, seed):
    """Facility location with its client sample (FACILITY_CLIENTS_MAX) and exactly (every X-ray a client) on
    one synthetic pool: each one's objective over the whole pool, that of k random picks, shared picks, times."""
    x = F.normalize(torch.from_numpy(synthetic_pool(pool, dim, seed)), dim=-1)
    rng = np.random.default_rng([seed, BASELINE_SELECTION, RANDOM_STREAMS["facility-location"], 0])
    check = {"pool": pool, "dim": dim, "k": k, "clients": blocked_baselines.FACILITY_CLIENTS_MAX,
             "random_objective": facility_objective(x, torch.from_numpy(rng.choice(pool, k, replace=False)))}
    picks = {}
    sampled_clients = blocked_baselines.FACILITY_CLIENTS_MAX
    for name, clients in (("sampled", sampled_clients), ("exact", pool)):
        blocked_baselines.FACILITY_CLIENTS_MAX = clients
        try:
            started = time.monotonic()
            picks[name] = blocked_baselines.facility_location(x, k, np.random.default_rng(
                [seed, BASELINE_SELECTION, RANDOM_STREAMS["facility-location"], 1]))
            check[f"{name}_seconds"] = time.monotonic() - started
        finally:
            blocked_baselines.FACILITY_CLIENTS_MAX = sampled_clients
        check[f"{name}_objective"] = facility_objective(x, picks[name])
    check["shared_picks"] = len(set(picks["sampled"].tolist()) & set(picks["exact"].tolist()))
    print(f"facility location at {pool:,} x {dim}: objective exact {check['exact_objective']:.1f}, sampled "
          f"{check['sampled_objective']:.1f}, random {check['random_objective']:.1f}; {check['shared_picks']} of {k} "
          f"picks shared; {check['exact_seconds']:.0f} s exact, {check['sampled_seconds']:.0f} s sampled", flush=True)
    return check


def facility_sentence(check):
    """One line: how much of the exact greedy's gain over random picks the sampled objective's picks reach."""
    gained = ((check["sampled_objective"] - check["random_objective"])
              / (check["exact_objective"] - check["random_objective"]))
    return (f"* Facility location's client sample, checked in one process on a synthetic pool of {check['pool']:,} × "
            f"{check['dim']} (`--facility_check {check['pool']}`): the {check['k']} X-rays picked with "
            f"{check['clients']:,} sampled clients reach {100 * gained:.2f} % of the exact greedy's gain over "
            f"{check['k']} random X-rays in the whole pool's objective (exact {check['exact_objective']:,.1f}, sampled "
            f"{check['sampled_objective']:,.1f}, random {check['random_objective']:,.1f}); {check['shared_picks']} of "
            f"{check['k']} picks are the same; {check['exact_seconds']:.0f} s exact against "
            f"{check['sampled_seconds']:.0f} s sampled.")


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    pools = [int(p) for p in args.pools.split(",") if p]  # "" with --facility_check: that check only
    dims = [int(d) for d in args.dims.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in BASELINE_METHODS]
    if unknown:
        sys.exit(f"error: unknown method(s) {', '.join(unknown)}; valid: {', '.join(BASELINE_METHODS)}")
    os.makedirs(args.work_dir, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    results, commands, facility = {}, [], None
    command = command_line("bench/large_pool.py", argv)
    earlier = os.path.join(args.out, "results.json")
    if args.update and os.path.exists(earlier):
        with open(earlier) as file:
            stored = json.load(file)
        if isinstance(stored, list):  # written before --update existed: the results only
            stored = {"results": stored}
        commands = stored.get("commands", [])
        facility = stored.get("facility_check")
        for row in stored["results"]:
            results.setdefault((row["pool"], row["dim"]), {})[row["method"]] = row
    commands.append(command.strip())
    for dim in dims:
        for pool in pools:
            pool_csv = os.path.join(args.work_dir, f"pool_{pool}_{dim}.csv")
            write_pool(pool_csv, pool, dim, args.seed)
            results.setdefault((pool, dim), {})
            for method in methods:
                load_before = os.getloadavg()[0]
                status, seconds, peak, message = run_method(method, pool_csv, args.k, args.timeout, args.max_memory,
                                                            os.path.join(args.work_dir, "selected.csv"))
                results[(pool, dim)][method] = {"status": status, "seconds": seconds, "peak_bytes": peak,
                                                "message": message, "load_before": load_before}
                print(f"{pool:>8,} x {dim:<5} {method:<20} {status:<8} {seconds:8.1f} s {peak / 2**30:6.2f} GB"
                      + (f"  {message}" if status != "ok" else ""), flush=True)
                markdown = write_results(results, commands, args, facility)  # after each: a stopped run keeps them
    if args.facility_check:
        facility = facility_check(args.facility_check, dims[0], args.k, args.seed)
    print(write_results(results, commands, args, facility))


def write_results(results, commands, args, facility=None):
    """results.json and the markdown fragment of everything measured so far; returns the markdown."""
    for (pool, dim), by_method in results.items():  # today's estimate: the one --max_memory is checked against
        for method, result in by_method.items():
            result["estimate_bytes"] = estimated_peak_bytes(method, pool, dim)
    with open(os.path.join(args.out, "results.json"), "w") as file:
        json.dump({"commands": commands, "results": [{**r, "pool": p, "dim": d, "method": m}
                                                     for (p, d), by in results.items() for m, r in by.items()],
                   "facility_check": facility}, file, indent=1)
    shown = [m for m in BASELINE_METHODS if any(m in by for by in results.values())]
    ordered = dict(sorted(results.items(), key=lambda item: (item[0][1], item[0][0])))
    body = (f"Each cell: wall time of `select_xrays.py -k {args.k}`, its peak resident memory, and in brackets "
            "the estimate of models/baseline_memory.py (GB).\n\n" + table(ordered, shown) + "\n\n" + summary(ordered)
            + ("\n" + facility_sentence(facility) if facility else ""))
    markdown = fragment_text(body, "; then ".join(commands), machine_description())
    if args.fragment:
        os.makedirs(os.path.dirname(args.fragment) or ".", exist_ok=True)
        with open(args.fragment, "w") as file:
            file.write(markdown)
    return markdown


if __name__ == "__main__":
    main()
