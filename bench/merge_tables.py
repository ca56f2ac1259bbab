#!/usr/bin/env python3
"""bench/merge_tables.py: joins kiln-bench's JSON lines (kiln, its variants, cuDNN, the CPU
backend) with torch_bn.py's (PyTorch) into the final Markdown tables: one table per direction,
one row per case, layout and dtype, one column per implementation, the speedups of kiln's
default path over cuDNN and PyTorch, and a geometric-mean row per layout. With --train it also
joins `kiln-bench train` and torch_train.py into a steps/s table. Python's standard library
only; it runs anywhere the JSON lines are.

  usage: merge_tables.py --kiln K.jsonl [--torch T.jsonl] [--train TR.jsonl ...]
                         [--out bn_table.md] [--train-out train_table.md] [--note TEXT]
"""
import argparse
import json
import math
import sys

IMPLS = (("kiln", "kiln"), ("kiln-block", "block"), ("kiln-grid", "grid"), ("kiln-multi", "multi"),
         ("cudnn", "cuDNN"), ("torch", "PyTorch"), ("cpu", "CPU"))
DIRS = (("fwd_train", "Forward, training"), ("fwd_infer", "Forward, inference"), ("bwd", "Backward"))
LAYOUTS = ("nhwc", "nchw", "nc")


def read(paths):
    meta, rows = [], []
    for p in paths or []:
        try:
            f = open(p)
        except OSError as e:
            print(f"merge_tables: skipping {p}: {e.strerror}", file=sys.stderr)
            continue
        with f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                (meta if r.get("bench") == "meta" else rows).append(r)
    return meta, rows


def geomean(v):
    v = [x for x in v if x is not None and math.isfinite(x) and x > 0]
    return (math.exp(sum(math.log(x) for x in v) / len(v)), len(v)) if v else (None, 0)


def fmt(v, f="{:.4f}"):
    return "-" if v is None else f.format(v)


def gbs(v):
    """GB/s or a percentage: one decimal from 10 up, three significant digits below"""
    return "-" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.3g}"


def cell(r):
    if r is None:
        return ""
    if r["status"] == "ok":
        return fmt(r["median_ms"])
    return {"invalid": "**INVALID**", "error": "error", "unsupported": "n/a"}.get(r["status"], r["status"])


def ok_ms(r):
    return r["median_ms"] if r is not None and r["status"] == "ok" else None


def header(meta, note):
    out = []
    for m in meta:
        what = m.get("impl") or "kiln-bench"
        ceiling = f"; copy ceiling {m['copy_gbps']:.1f} GB/s (read + written)" if m.get("copy_gbps") else ""
        parts = [m.get("name"), m.get("driver"), ceiling.lstrip("; "), m.get("date"), f"`{m.get('command', '')}`",
                 f"commit {m.get('commit') or 'n/a'}"]
        out.append(f"- {what} on {m['device']}: " + "; ".join(p for p in parts if p))
    if note:
        out.append(f"- {note}")
    return out


def bn_tables(rows):
    """one Markdown table per direction; the primary is kiln's default path (the CPU backend in a
    CPU-only run), compared with cuDNN and PyTorch"""
    byc, order, present = {}, [], set()
    for r in rows:
        if r.get("bench") != "bn":
            continue
        key = (r["case"], r["layout"], r["dtype"])
        if key not in byc:
            byc[key] = {}
            order.append((key, r))
        byc[key].setdefault(r["dir"], {})[r["impl"]] = r
        present.add(r["impl"])
    impls = [(i, label) for i, label in IMPLS if i in present]
    primary = "kiln" if "kiln" in present else "cpu"
    plabel = dict(IMPLS)[primary]
    row = lambda cells: "| " + " | ".join(cells) + " |"
    out = []
    for d, title in DIRS:
        out += [f"\n### {title}\n",
                row(["case", "shape", "layout", "dtype", "MB"] + [f"{l} ms" for _, l in impls]
                    + [f"{plabel} GB/s", f"{plabel} % of copy", f"{plabel} vs cuDNN", f"{plabel} vs PyTorch"]),
                "|---|---|---|---|---:|" + "---:|" * (len(impls) + 4)]
        for layout in LAYOUTS:
            acc = ([], [], [], [])
            for (case, lay, dt), first in order:
                cells = byc[(case, lay, dt)].get(d)
                if lay != layout or not cells:
                    continue
                k = cells.get(primary)
                kt, c, t = ok_ms(k), ok_ms(cells.get("cudnn")), ok_ms(cells.get("torch"))
                if t is not None and k is not None and cells["torch"]["device"] != k["device"]:
                    t = None  # PyTorch on another device than the primary: no ratio
                gb, pc = (k["gbps"], k["pct_copy"]) if kt else (None, None)
                vs_c, vs_t = (c / kt if kt and c else None), (t / kt if kt and t else None)
                for a, v in zip(acc, (gb, pc, vs_c, vs_t)):
                    a.append(v)
                some = next(iter(cells.values()))
                shape = "(" + ", ".join(str(s) for s in first["shape"]) + ")"
                out.append(row([case, shape, lay, dt, f"{some['bytes'] / 1e6:.1f}"]
                               + [cell(cells.get(i)) for i, _ in impls]
                               + [gbs(gb), gbs(pc), fmt(vs_c, "{:.2f}x"), fmt(vs_t, "{:.2f}x")]))
            if not acc[0]:
                continue
            means = [geomean(a) for a in acc]
            out.append(row([f"**geomean {layout}**", "", "", "", ""] + [""] * len(impls)
                           + [f"{fmt(m, f)} ({n})" for (m, n), f in zip(means, ("{:.1f}", "{:.1f}", "{:.2f}x", "{:.2f}x"))]))
    return out


def summary_table(rows):
    """geometric means per direction, layout and implementation: % of copy, and the speedup of
    each implementation over cuDNN and over PyTorch on the configs where both ran"""
    cells = {}
    for r in rows:
        if r.get("bench") == "bn":
            cells.setdefault((r["case"], r["layout"], r["dtype"], r["dir"]), {})[r["impl"]] = r
    present = {i for c in cells.values() for i in c}
    out = ["\n### Geometric means per implementation\n",
           "| dir | layout | impl | ok | % of copy | vs cuDNN | vs PyTorch |", "|---|---|---|---:|---:|---:|---:|"]
    for d, _ in DIRS:
        for layout in LAYOUTS:
            for impl, label in IMPLS:
                if impl not in present:
                    continue
                pc, vc, vt, n = [], [], [], 0
                for (case, lay, dt, dd), c in cells.items():
                    r = c.get(impl)
                    if dd != d or lay != layout or r is None or r["status"] != "ok":
                        continue
                    n += 1
                    pc.append(r["pct_copy"])
                    for ref, acc in (("cudnn", vc), ("torch", vt)):
                        t = ok_ms(c.get(ref))
                        if t and ref != impl and c[ref]["device"] == r["device"]:
                            acc.append(t / r["median_ms"])
                if n:
                    (gp, _), (gc, n2), (gt, n3) = geomean(pc), geomean(vc), geomean(vt)
                    out.append(f"| {d} | {layout} | {label} | {n} | {gbs(gp)} | {fmt(gc, '{:.2f}x')} ({n2}) | "
                               f"{fmt(gt, '{:.2f}x')} ({n3}) |")
    return out


def train_table(rows):
    runs, order = {}, []
    for r in rows:
        if r.get("bench") != "train":
            continue
        key = (r["model"], r["batch"], r["device"])
        if key not in runs:
            runs[key] = {}
            order.append(key)
        runs[key][r["impl"]] = r
    out = ["| model | batch | device | kiln steps/s | PyTorch steps/s | kiln / PyTorch | kiln images/s | "
           "PyTorch images/s | params kiln / PyTorch |", "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for key in order:
        k, t = runs[key].get("kiln"), runs[key].get("torch")
        ks, ts = (k or {}).get("steps_per_s"), (t or {}).get("steps_per_s")
        out.append(f"| {key[0]} | {key[1]} | {key[2]} | {fmt(ks, '{:.2f}')} | {fmt(ts, '{:.2f}')} | "
                   f"{fmt(ks / ts if ks and ts else None, '{:.2f}x')} | {fmt((k or {}).get('images_per_s'), '{:.0f}')} | "
                   f"{fmt((t or {}).get('images_per_s'), '{:.0f}')} | {(k or {}).get('params', '-')} / {(t or {}).get('params', '-')} |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kiln", nargs="*", default=[])
    ap.add_argument("--torch", nargs="*", default=[])
    ap.add_argument("--train", nargs="*", default=[])
    ap.add_argument("--out", default=None)
    ap.add_argument("--train-out", default=None)
    ap.add_argument("--note", default=None, help="a line for the header (machine, driver, ...)")
    args = ap.parse_args()
    km, kr = read(args.kiln)
    tm, tr = read(args.torch)
    if kr or tr:
        lines = ["# BatchNorm: kiln vs cuDNN vs PyTorch", ""] + header(km + tm, args.note) + [
            "", "Times: median ms per call, caches flushed before every repetition; MB: ideal bytes (forward: x read + "
                "y written; backward: x, dy read + dx written); % of copy: GB/s on those bytes over the device-to-device "
                "copy measured in the same run; speedups: cuDNN or PyTorch time over kiln's (default path) time; "
                "geomean rows: over the configs where both sides ran (count in parentheses). n/a: the implementation "
                "refused the shape; **INVALID**: it failed validation and was not timed."] + bn_tables(kr + tr) + summary_table(kr + tr)
        text = "\n".join(lines) + "\n"
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
    trm, trr = read(args.train)
    if trr:
        text = "\n".join(["# Training throughput: kiln vs PyTorch", ""] + header(trm, args.note) + [""] + train_table(trr)) + "\n"
        if args.train_out:
            with open(args.train_out, "w") as f:
                f.write(text)
        else:
            sys.stdout.write(text)


if __name__ == "__main__":
    main()
