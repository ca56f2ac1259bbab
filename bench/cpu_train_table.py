#!/usr/bin/env python3
"""bench/cpu_train_table.py: the CPU training table of bench/cpu_train_table.sh from its JSON
lines: kiln-bench train, torch_train.py and keras_train.py rows, each group after a
{"bench":"config","threads":N,...} line written by the script. One row per (model, input,
batch, threads): the second epoch's ms/step of each, and kiln's speed relative to each
(their ms/step over kiln's: above 1x kiln is faster), and the parameter counts, checked layer by
layer (every layer's weight count, BN's moving statistics included as Keras counts them).
Python's standard library only.

  usage: cpu_train_table.py RESULTS.jsonl [--out TABLE.md] [--note TEXT ...]
"""
import argparse
import json
import sys

NAMES = (("kiln", "kiln"), ("torch", "PyTorch"), ("keras", "Keras"))


def tagged_rows(path):
    """the rows of `path`, each with the threads of the config line before it; the metas"""
    rows, metas, threads = [], [], None
    with open(path) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if r.get("bench") == "config":
                threads = r.get("threads")
            elif r.get("bench") == "meta":
                metas.append(r)
            else:
                r["threads"] = threads
                rows.append(r)
    return metas, rows


def ms(r):
    return None if r is None else 1e3 * r["median_s"] / r["steps"]


def ratio(other, kiln):
    return "-" if other is None or kiln is None else f"{other / kiln:.2f}x"


def params_cell(by):
    got = [by[k] for k, _ in NAMES if by.get(k)]
    if not got:
        return "-"
    same = all(r.get("layer_params") == got[0].get("layer_params") and r["params"] == got[0]["params"] for r in got)
    if same and len(got) == len(NAMES):
        return f"{got[0]['params']}, all three equal in each of {len(got[0]['layer_params'])} layers"
    return "**MISMATCH** " + " / ".join(f"{n} {by[k]['params'] if by.get(k) else '-'}" for k, n in NAMES)


def table(rows):
    keys, by = [], {}
    for r in rows:
        if r.get("bench") != "train":
            continue
        k = (r["model"], r.get("input", "32x32x3"), r["batch"], r["threads"])
        if k not in by:
            keys.append(k)
            by[k] = {}
        by[k][r["impl"]] = r
    out = ["| model | input | batch | threads | steps/epoch | kiln ms/step | PyTorch ms/step | Keras ms/step "
           "| kiln vs PyTorch | kiln vs Keras | params (kiln, PyTorch, Keras) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for k in keys:
        b = by[k]
        t = {impl: ms(b.get(impl)) for impl, _ in NAMES}
        cells = [f"{v:.1f}" if v is not None else "-" for v in t.values()]
        steps = next(r["steps"] for r in b.values())
        out.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {steps} | " + " | ".join(cells) +
                   f" | {ratio(t['torch'], t['kiln'])} | {ratio(t['keras'], t['kiln'])} | {params_cell(b)} |")
    return out


def layer_lists(rows):
    """each model and input's per-layer weight counts, once, with which tools gave that list"""
    seen, out = {}, ["Weights per layer (BN with its moving statistics), in kiln's layer order:", ""]
    for r in rows:
        if r.get("bench") == "train" and r.get("layer_params"):
            key = (r["model"], r.get("input", "32x32x3"), tuple(r["layer_params"]))
            seen.setdefault(key, set()).add(dict(NAMES).get(r["impl"], r["impl"]))
    for (model, inp, lp), who in seen.items():
        out.append(f"- {model} {inp} ({', '.join(sorted(who))}): {sum(lp)} = {' + '.join(map(str, lp))}")
    return out + [""]


def header(metas, notes):
    out, seen = [], set()
    for m in metas:
        impl = m.get("impl") or "kiln"
        if impl in seen:
            continue
        seen.add(impl)
        what = "kiln-bench" if impl == "kiln" else impl
        parts = [m.get("name"), m.get("driver"), f"first command `{m.get('command', '')}`",
                 f"commit {m.get('commit') or 'n/a'}"]
        out.append(f"- {what}: " + "; ".join(p for p in parts if p))
    return out + [f"- {n}" for n in notes]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jsonl")
    ap.add_argument("--out", default=None)
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args()
    metas, rows = tagged_rows(args.jsonl)
    if not rows:
        sys.exit(f"cpu_train_table: no result rows in {args.jsonl}")
    lines = ["# CPU training: kiln vs PyTorch vs Keras (second epoch, ms per step)", ""]
    lines += header(metas, args.note) + [""] + table(rows) + [""] + layer_lists(rows)
    text = "\n".join(lines)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
