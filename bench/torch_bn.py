#!/usr/bin/env python3
"""bench/torch_bn.py: PyTorch's BatchNorm (torch.nn.functional.batch_norm and its autograd
backward) on kiln-bench's cases, measured the way kiln-bench measures kiln and cuDNN, so that
bench/merge_tables.py can put a PyTorch column beside them.

The cases come from kiln-bench itself (`kiln-bench bn --list ... > cases.jsonl`), so the two
never drift apart. Per case, layout and dtype, and for each direction (training forward,
inference forward, backward): draw inputs (never zeros), check the result against a float64
reference computed from the formulas (not from torch's BN), and only then time it: CUDA events
around each call after a warm-up, the L2 flushed before every repetition by reading a buffer
four times its size, the median reported. Bytes are counted as kiln-bench counts them (x read
and y written; backward x and dy read, dx written) and compared with a device-to-device copy
measured in the same run. Without CUDA it runs on the CPU with a host clock.

  usage: torch_bn.py --cases FILE [--device cuda|cpu] [--reps N] [--warmup N] [--json OUT]
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
TOL = {"f32": 1e-4, "f16": 2e-3, "bf16": 1e-2}  # as bench/bn_ref.c: max-normalised error
SUM_TOL = 1e-3  # dgamma, dbeta: sums that mostly cancel (BENCH_SUM_TOL in bench/bench.h)
EPS, MOMENTUM = 1e-5, 0.1
DIRS = ("fwd_train", "fwd_infer", "bwd")


class Timer:
    """CUDA events on the current stream (or the host clock on the CPU), a cache flush."""

    def __init__(self, device):
        self.device = device
        self.cuda = device.type == "cuda"
        if self.cuda:
            props = torch.cuda.get_device_properties(device)
            self.cache = int(getattr(props, "L2_cache_size", 0)) or 64 << 20
            self.name = f"{props.name} ({props.multi_processor_count} SMs, {self.cache >> 20} MiB L2)"
        else:
            self.cache = 32 << 20
            self.name = cpu_name()
        self.flush_buf = torch.randint(1, 1 << 30, (4 * self.cache // 4,), dtype=torch.int32,
                                       device=device)
        self.sink = torch.empty((), dtype=torch.int64, device=device)

    def flush(self):
        torch.sum(self.flush_buf, dim=0, dtype=torch.int64, out=self.sink)  # reads, writes one word

    def time(self, fn, warmup, reps):
        """median, min, p90 of reps calls of fn, in ms"""
        t0, i = time.perf_counter(), 0  # at least `warmup` calls and, on a GPU, 25 ms (clocks up)
        while i < warmup or (self.cuda and time.perf_counter() - t0 < 0.025 and i < 100000):
            fn()
            self.sync()
            i += 1
        ts = []
        for _ in range(reps):
            self.flush()
            if self.cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                ts.append(a.elapsed_time(b))
            else:
                t0 = time.perf_counter()
                fn()
                ts.append(1e3 * (time.perf_counter() - t0))
        ts.sort()
        n = len(ts)
        med = ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])
        return med, ts[0], ts[int((n - 1) * 0.9 + 0.5)]

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def copy_gbps(self, reps=20):
        nbytes = min(max(8 * self.cache, 256 << 20), 2 << 30)
        src = torch.randint(1, 1 << 30, (nbytes // 4,), dtype=torch.int32, device=self.device)
        dst = torch.empty_like(src)
        med, _, _ = self.time(lambda: dst.copy_(src), 3, reps)
        return 2.0 * nbytes / (med * 1e-3) / 1e9


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def make_inputs(spec, device, seed):
    """x, dy in the config's dtype and layout; per channel f32 gamma, beta, moving stats"""
    shape, layout, dt = spec["shape"], spec["layout"], DTYPES[spec["dtype"]]
    c = shape[1]
    g = torch.Generator(device=device).manual_seed(seed)  # drawn where they are used
    u = lambda *s: torch.rand(*s, generator=g, dtype=torch.float64, device=device)
    view = [1, c] + [1] * (len(shape) - 2)
    shift, scale = (2 * u(c) - 1).view(view), (0.5 + 1.5 * u(c)).view(view)
    x = (shift + scale * (2 * u(*shape) - 1)).to(dt)
    dy = (0.2 * (2 * u(c) - 1).view(view) + (2 * u(*shape) - 1)).to(dt)
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    x, dy = (t.contiguous(memory_format=fmt) for t in (x, dy))
    ch = lambda lo, hi: (lo + (hi - lo) * u(c)).float()
    return x, dy, ch(0.5, 1.5), ch(-0.5, 0.5), ch(-0.5, 0.5), ch(0.5, 2.0)


def max_err(got, want):
    """max |got - want| / max |want|; inf when got holds a NaN or an infinity"""
    got = got.double()
    if not torch.isfinite(got).all():
        return math.inf
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def reference(x, dy, gamma, beta, mm, mv):
    """float64 results of the three directions, from the formulas"""
    dims = [0] + list(range(2, x.dim()))
    view = [1, -1] + [1] * (x.dim() - 2)
    xd, dyd = x.double(), dy.double()
    n = xd.numel() // xd.shape[1]
    mean = xd.mean(dims)
    var = ((xd - mean.view(view)) ** 2).mean(dims)
    invstd = 1.0 / torch.sqrt(var + EPS)
    g, b = gamma.double(), beta.double()
    xhat = (xd - mean.view(view)) * invstd.view(view)
    y = g.view(view) * xhat + b.view(view)
    unbiased = var * n / (n - 1) if n > 1 else var
    mm_new = (1 - MOMENTUM) * mm.double() + MOMENTUM * mean
    mv_new = (1 - MOMENTUM) * mv.double() + MOMENTUM * unbiased
    y_inf = g.view(view) * (xd - mm.double().view(view)) / torch.sqrt(mv.double().view(view) + EPS) + b.view(view)
    dbeta = dyd.sum(dims)
    dgamma = (dyd * xhat).sum(dims)
    dx = (g * invstd).view(view) / n * (n * dyd - dbeta.view(view) - xhat * dgamma.view(view))
    return {"y": y, "mm": mm_new, "mv": mv_new, "y_inf": y_inf, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def run_config(spec, timer, args, seed):
    """JSON-ready records of the three directions of one config"""
    dev = timer.device
    x, dy, gamma, beta, mm0, mv0 = make_inputs(spec, dev, seed)
    ref = reference(x, dy, gamma, beta, mm0, mv0)
    mm, mv = mm0.clone(), mv0.clone()
    xg, gg, bg = x.detach().clone().requires_grad_(True), gamma.clone().requires_grad_(True), beta.clone().requires_grad_(True)
    graph = {}

    def fwd_train():
        return F.batch_norm(x, mm, mv, gamma, beta, training=True, momentum=MOMENTUM, eps=EPS)

    def fwd_infer():
        return F.batch_norm(x, mm, mv, gamma, beta, training=False, momentum=MOMENTUM, eps=EPS)

    def bwd():
        return torch.autograd.grad(graph["y"], (xg, gg, bg), dy, retain_graph=True)

    tol = TOL[spec["dtype"]]

    def check(d):
        mm.copy_(mm0), mv.copy_(mv0)
        if d == "fwd_train":
            y = fwd_train()
            errs = {"y": max_err(y, ref["y"]), "moving_mean": max_err(mm, ref["mm"]), "moving_var": max_err(mv, ref["mv"])}
        elif d == "fwd_infer":
            errs = {"y": max_err(fwd_infer(), ref["y_inf"])}
        else:
            graph["y"] = F.batch_norm(xg, None, None, gg, bg, training=True, momentum=MOMENTUM, eps=EPS)
            dx, dg, db = bwd()
            errs = {"dx": max_err(dx, ref["dx"]), "dgamma": max_err(dg, ref["dgamma"]), "dbeta": max_err(db, ref["dbeta"])}
        # y, dx in the dtype's precision; the f32 per-channel outputs as f32 (bench/bn_ref.c)
        tols = {k: SUM_TOL if k in ("dgamma", "dbeta") else TOL["f32"] if k.startswith("moving") else tol for k in errs}
        what = max(errs, key=lambda k: errs[k] / tols[k])
        return all(errs[k] <= tols[k] for k in errs), errs[what], tols[what], what

    out = []
    numel = x.numel()
    esize = x.element_size()
    for d in DIRS:
        rec = dict(bench="bn", impl="torch", device=dev.type, case=spec["case"], shape=spec["shape"],
                   layout=spec["layout"], dtype=spec["dtype"], dir=d, numel=numel, status="ok", message="",
                   median_ms=None, min_ms=None, p90_ms=None, bytes=(3 if d == "bwd" else 2) * numel * esize,
                   gbps=None, copy_gbps=args.copy_gbps, pct_copy=None, speedup_cudnn=None, err=None,
                   tol=TOL[spec["dtype"]], reps=0)
        try:
            ok, err, rec["tol"], what = check(d)
            rec["err"] = err if math.isfinite(err) else None
            if not ok:
                rec["status"], rec["message"] = "invalid", f"{what}: error {err:.3g} > tolerance {rec['tol']:g}"
            else:
                fn = {"fwd_train": fwd_train, "fwd_infer": fwd_infer, "bwd": bwd}[d]
                med, mn, p90 = timer.time(fn, args.warmup, args.reps)
                gbps = rec["bytes"] / (med * 1e-3) / 1e9
                rec.update(median_ms=med, min_ms=mn, p90_ms=p90, gbps=gbps, reps=args.reps,
                           pct_copy=100.0 * gbps / args.copy_gbps)
        except (RuntimeError, NotImplementedError) as e:  # a dtype or shape torch refuses
            rec["status"], rec["message"] = "unsupported", str(e).splitlines()[0][:190]
        out.append(rec)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True, help="JSON lines with case, shape, layout, dtype (kiln-bench bn --list)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--json", default=None, help="output file (default stdout)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: torch.cuda.is_available() is False")
    args.reps = args.reps or (50 if dev.type == "cuda" else 10)
    args.warmup = args.warmup if args.warmup is not None else (5 if dev.type == "cuda" else 2)
    if dev.type == "cuda":  # as kiln: strict fp32 everywhere
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    specs, seen = [], set()
    with open(args.cases) as f:
        for line in f:
            r = json.loads(line)
            key = (r.get("case"), r.get("layout"), r.get("dtype"))
            if r.get("bench") in ("bn-case", "bn") and None not in key and key not in seen:
                seen.add(key)
                specs.append(r)
    timer = Timer(dev)
    args.copy_gbps = timer.copy_gbps()
    print(f"torch_bn: copy ceiling on {timer.name}: {args.copy_gbps:.1f} GB/s (read + written)", file=sys.stderr)
    out = open(args.json, "w") if args.json else sys.stdout
    meta = dict(bench="meta", what="bn", date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), device=dev.type,
                name=timer.name, driver=f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
                cache_bytes=timer.cache, units=torch.cuda.get_device_properties(dev).multi_processor_count if dev.type == "cuda" else torch.get_num_threads(),
                copy_gbps=args.copy_gbps, command=" ".join(sys.argv), commit=os.environ.get("KILN_COMMIT"), impl="torch",
                cudnn_enabled=torch.backends.cudnn.enabled)
    print(json.dumps(meta), file=out, flush=True)
    bad = 0
    for i, spec in enumerate(specs):
        for rec in run_config(spec, timer, args, seed=1000 + i):
            print(json.dumps(rec), file=out, flush=True)
            bad += rec["status"] == "invalid"
            t = f"{rec['median_ms']:9.4f} ms {rec['gbps']:8.1f} GB/s {rec['pct_copy']:5.1f}% of copy  err {rec['err']:.1e}" \
                if rec["status"] == "ok" else f"{rec['status']}: {rec['message']}"
            print(f"[{i + 1}/{len(specs)}] {spec['case']:<18} {spec['layout']:<4} {spec['dtype']:<4} {rec['dir']:<9} torch  {t}",
                  file=sys.stderr)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if out is not sys.stdout:
        out.close()
    if bad:
        print("torch_bn: *** some configs FAILED validation (see above) ***", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
