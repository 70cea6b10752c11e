"""The report of scripts/bench-engines: oneDNN vs fpnstream's own kernels vs OpenBLAS, from the files of one run.

    python3 scripts/py/bench_engines.py DIR --rounds N

DIR holds, per round r: onednn-r.tsv (scripts/onednn/bench_conv.cpp), ops-{own,direct,openblas,bf16}-r.txt
(`fpnstream bench ops`), backbone-{own,bf16,openblas}-r.txt (`fpnstream bench backbone`), plus version.txt and
load-{start,end}.txt. Each figure is the median over the rounds. Standard library only (Debian's python3).
"""
import argparse
import re
import statistics
import sys
from pathlib import Path

CONV_ROW = re.compile(r"^  (.+?)\s+(\d+x\d+x\d+)\s+([\d.]+)\s+([\d.]+)\s+\d+%\s+\d+%$")
ROI_ROW = re.compile(r"^  (.+?)\s{2,}([\d.]+)\s+([\d.]+)\s+\d+%$")
OWN = [("own", "own wino"), ("direct", "own direct"), ("openblas", "OpenBLAS")]


def ops_times(path):
    """{shape name: ms} from one `fpnstream bench ops` output (dense conv rows and RoI-head rows)."""
    times, roi = {}, False
    for line in path.read_text().splitlines():
        if line.startswith("RoI-head convs"):
            roi = True
        elif not line.startswith("  "):
            roi = False
        m = (ROI_ROW if roi else CONV_ROW).match(line)
        if m:
            times[m.group(1).strip()] = float(m.group(3) if not roi else m.group(2))
    return times


def onednn_rows(path):
    """[(name, count, gflop, precision, impl, conv ms, reorders ms, winograd ms or None)] from bench_conv's output."""
    rows = []
    for line in path.read_text().splitlines():
        f = line.split("\t")
        if f[0] == "row":
            rows.append((f[1], int(f[2]), float(f[4]), f[5], f[6], float(f[7]), float(f[8]),
                         None if f[9] == "-" else float(f[9])))
    return rows


def backbone(path):
    """{frame, conv, limit, winograd, direct} (ms, GFLOP/s) from one `fpnstream bench backbone` output."""
    text = path.read_text()
    pats = {"frame": r"^frame: median ([\d.]+) ms", "conv": r"^conv layers only .*?, ([\d.]+) ms =",
            "limit": r"^FMA-loop limit .*: ([\d.]+) GFLOP/s",
            "winograd": r"interleaved over \d+ frames each: Winograd ([\d.]+) ms",
            "direct": r"interleaved over \d+ frames each: Winograd [\d.]+ ms, direct GEMM ([\d.]+) ms"}
    out = {}
    for key, pat in pats.items():
        m = re.search(pat, text, re.M)
        if m:
            out[key] = float(m.group(1))
    return out


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def load(d, rounds):
    """Medians over the rounds: oneDNN per (precision, name), bench ops per engine, backbone per engine."""
    dnn = {}
    for r in range(1, rounds + 1):
        for name, count, gflop, prec, impl, conv, reord, wino in onednn_rows(d / f"onednn-{r}.tsv"):
            e = dnn.setdefault((prec, name), {"count": count, "gflop": gflop, "impl": impl, "conv": [], "reord": [],
                                              "wino": []})
            e["conv"].append(conv), e["reord"].append(reord), e["wino"].append(wino)
    dnn = {k: dict(v, conv=med(v["conv"]), reord=med(v["reord"]), wino=med(v["wino"])) for k, v in dnn.items()}
    ops, bb = {}, {}
    for engine in ("own", "direct", "openblas", "bf16"):
        files = [d / f"ops-{engine}-{r}.txt" for r in range(1, rounds + 1)]
        if all(f.exists() for f in files):
            per = [ops_times(f) for f in files]
            ops[engine] = {n: med([p.get(n) for p in per]) for n in per[0]}
    for engine in ("own", "bf16", "openblas"):
        files = [d / f"backbone-{engine}-{r}.txt" for r in range(1, rounds + 1)]
        if all(f.exists() for f in files):
            per = [backbone(f) for f in files]
            bb[engine] = {k: med([p.get(k) for p in per]) for k in per[0]}
    return dnn, ops, bb


def cell(gflop, ms, limit):
    """'GFLOP/s %limit' for one timing, blank when missing."""
    if ms is None:
        return f"{'-':>11}"
    rate = gflop / ms * 1e3
    return f"{rate:6.0f} {100 * rate / limit:3.0f}%"


def ratio(a, b):
    return f"{a / b:6.2f}" if a is not None and b else f"{'-':>6}"


def shape_table(prec, dnn, ops, limit, engines):
    """Per-shape rows for one precision; returns {engine: (sum count*ms, sum count*gflop)} over shapes all have."""
    head = f"{'shape':40} {'n':>2} {'GFLOP':>6}  {'oneDNN':>11} {'+reorders':>11} {'oneDNN wino':>11}"
    head += "".join(f" {label:>11}" for _, label in engines)
    head += "".join(f" {label + '/1DNN':>15}" for _, label in engines) + "  oneDNN impl"
    print(head)
    totals = {}
    for (p, name), e in dnn.items():
        if p != prec:
            continue
        g = e["gflop"]
        own = [ops.get(k, {}).get(name) for k, _ in engines]
        line = f"{name:40} {e['count']:2d} {g:6.2f}  {cell(g, e['conv'], limit)} {cell(g, e['reord'], limit)}"
        line += f" {cell(g, e['wino'], limit)}" + "".join(f" {cell(g, t, limit)}" for t in own)
        line += "".join(f" {ratio(t, e['conv']):>15}" for t in own) + f"  {e['impl']}"
        print(line)
        if e["count"] and all(t is not None for t in own):
            for key, t in [("oneDNN", e["conv"]), ("oneDNN +reorders", e["reord"])] + \
                    [(label, t) for (_, label), t in zip(engines, own)]:
                s = totals.setdefault(key, [0.0, 0.0])
                s[0] += e["count"] * t
                s[1] += e["count"] * g
    return totals


def network(prec, dnn):
    """oneDNN's conv time for the whole ResNet-50-FPN (sum of count x median ms) and its GFLOP."""
    rows = [e for (p, _), e in dnn.items() if p == prec and e["count"]]
    return (sum(e["count"] * e["conv"] for e in rows), sum(e["count"] * e["reord"] for e in rows),
            sum(e["count"] * e["gflop"] for e in rows))


def report(d, rounds):
    dnn, ops, bb = load(d, rounds)
    if not dnn or "own" not in bb:
        sys.exit("bench_engines: missing oneDNN or bench backbone results in " + str(d))
    limit = bb["own"]["limit"]
    version = (d / "version.txt").read_text().strip().splitlines()
    print("\n== bench-engines: oneDNN vs fpnstream's own kernels vs OpenBLAS, 2 threads each")
    for line in version[1:] + [(d / f).read_text().strip() for f in ("load-start.txt", "load-end.txt")]:
        print("  " + line)
    first = (d / "onednn-1.tsv").read_text().splitlines()[0].lstrip("# ")
    print(f"  {first}; medians over {rounds} alternating rounds")
    print(f"  FMA-loop limit (bench backbone, median of rounds): {limit:.1f} GFLOP/s; cells are 'GFLOP/s %limit'"
          " (direct-convolution FLOPs, so Winograd can pass 100%)")
    print("  oneDNN = its conv alone, blocked layout in and out; +reorders = NCHW f32 in and out around it;"
          " oneDNN wino = its Winograd where it has one")
    print("  own wino = fpnstream's kernels (Winograd for stride-1 3x3, the default); own direct = FPNSTREAM_WINOGRAD=off;"
          " OpenBLAS = FPNSTREAM_COMPUTE=openblas")
    print("  X/1DNN = X's time / oneDNN's blocked conv time (> 1: slower than oneDNN)")
    for prec, engines in (("f32", OWN), ("bf16", [("bf16", "own bf16")])):
        if not any(p == prec for p, _ in dnn) or not all(k in ops for k, _ in engines):
            continue
        print(f"\n{prec}, per shape (n = occurrences per ResNet-50-FPN pass; the RoI-head rows are not part of it)")
        totals = shape_table(prec, dnn, ops, limit, engines)
        print(f"\n{prec}, the bench-ops shapes weighted by n:")
        base = totals.get("oneDNN", [0, 0])[0]
        for key, (ms, g) in totals.items():
            print(f"  {key:18} {ms:8.1f} ms  {g / ms * 1e3:6.1f} GFLOP/s {100 * g / ms * 1e3 / limit:5.1f}%"
                  f"  x{ms / base:.2f} oneDNN's time")
        conv, reord, g = network(prec, dnn)
        print(f"{prec}, whole ResNet-50-FPN ({g:.2f} GFLOP of conv layers; fpnstream: bench backbone medians):")
        own = bb.get("own" if prec == "f32" else "bf16", {})
        lines = [("oneDNN convs, blocked throughout", conv), ("oneDNN convs, NCHW at every layer", reord),
                 (f"fpnstream {prec} conv layers (profiled)", own.get("conv")),
                 (f"fpnstream {prec} whole frame", own.get("frame"))]
        if prec == "f32":
            lines += [("fpnstream frame, direct GEMM 3x3", bb["own"].get("direct")),
                      ("OpenBLAS conv layers (profiled)", bb.get("openblas", {}).get("conv")),
                      ("OpenBLAS whole frame", bb.get("openblas", {}).get("frame"))]
        for label, ms in lines:
            if ms:
                print(f"  {label:38} {ms:8.1f} ms  {g / ms * 1e3:6.1f} GFLOP/s {100 * g / ms * 1e3 / limit:5.1f}%"
                      f"  x{ms / conv:.2f} oneDNN's blocked time")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--rounds", type=int, required=True)
    a = ap.parse_args()
    report(a.dir, a.rounds)


if __name__ == "__main__":
    main()
