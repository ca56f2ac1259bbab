#!/usr/bin/env python3
"""kill_test.py: kill -9 `kiln train` at seeded random instants, many times, and check what it
leaves (by hand; tests/test_cli_durable.c runs a handful of the same kills in the suite).

    python3 scripts/kill_test.py build/kiln [--kills 50] [--seed 1] [--chain 3] [--keep DIR]

A reference run (--out, a checkpoint every epoch, --log-steps) is timed; then each trial starts
the same run in a fresh folder and kills it (SIGKILL) at an instant drawn uniformly over the
reference's duration, up to --chain times in a row (each restart resumes from the checkpoint
when there is one), then lets a last resume finish. After every kill:
  - every .safetensors in the folder is whole (header, offsets, size) and the checkpoint loads
    (`kiln evaluate --weights`);
  - history.csv is the header and rows 0, 1, ... (a last row cut short allowed), with as many
    rows as the checkpoint has epochs, or one more (the epoch in flight);
  - the step log is the header and steps 1, 2, ..., at least those of the checkpoint's epochs
    and at most one epoch more.
After the last resume, model.safetensors, checkpoint.safetensors, history.csv, the step log and
history.svg must equal the reference's byte for byte, and no temporary file may be left.
Prints the counts; exits 1 when any check failed.
"""
import argparse
import collections
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

RUN = ("train --model seed-cnn --train-size 64 --test-size 16 --image-size 8 --batch-size 16 --augment "
       "--standardize --validation-split 0.25 --verbose 0 --seed 7").split()
STEPS_PER_EPOCH = 3  # 48 training examples in batches of 16
OUTPUTS = ["model.safetensors", "checkpoint.safetensors", "history.csv", "steps.csv", "history.svg"]


def run_args(kiln, out, epochs, resume):
    a = [kiln] + RUN + ["--epochs", str(epochs), "--out", out, "--log-steps", os.path.join(out, "steps.csv")]
    return a + (["--resume", os.path.join(out, "checkpoint.safetensors")] if resume else [])


def safetensors_problem(path):
    """None when the file is a whole safetensors file, else what is wrong; and its metadata"""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        return "shorter than 8 bytes", {}
    n = struct.unpack("<Q", data[:8])[0]
    if 8 + n > len(data):
        return f"header length {n} runs past the end ({len(data)} bytes)", {}
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as e:
        return f"header is not JSON: {e}", {}
    meta = header.pop("__metadata__", {})
    spans = sorted(tuple(t["data_offsets"]) for t in header.values())
    end = 0
    for a, b in spans:
        if a != end:
            return f"data offsets leave a gap or overlap at {a}", meta
        end = b
    if 8 + n + end != len(data):
        return f"data ends at {8 + n + end}, the file at {len(data)}", meta
    return None, meta


def log_rows(path, first):
    """(whole rows numbered first, first+1, ... or None when they are not, a last row cut short)"""
    if not os.path.exists(path):
        return 0, False
    with open(path) as f:
        text = f.read()
    lines = text.split("\n")
    torn = lines[-1] != ""
    rows = lines[1:-1]
    for i, r in enumerate(rows):
        if int(r.split(",")[0]) != first + i:
            return None, torn
    return len(rows), torn


def check_after_kill(kiln, out, tally, problems, what):
    epochs = 0
    for name in ("model.safetensors", "checkpoint.safetensors"):
        p = os.path.join(out, name)
        if not os.path.exists(p):
            continue
        bad, meta = safetensors_problem(p)
        if bad:
            problems.append(f"{what}: {name}: {bad}")
        elif name == "checkpoint.safetensors":
            epochs = int(meta.get("kiln.epoch", "0"))
            ev = subprocess.run([kiln, "evaluate", "--weights", p] + RUN[3:9], capture_output=True, text=True)
            if ev.returncode != 0:
                problems.append(f"{what}: the checkpoint does not load: {ev.stderr.strip()}")
    tally[f"checkpoint has {epochs} epochs"] += 1
    rows, torn = log_rows(os.path.join(out, "history.csv"), 0)
    tally["history row cut short"] += torn
    if rows is None or rows not in (epochs, epochs + 1):
        problems.append(f"{what}: history.csv has rows {rows}, the checkpoint {epochs} epochs")
    else:
        tally["history one row ahead (epoch in flight)" if rows > epochs else "history rows == checkpoint epochs"] += 1
    steps, torn = log_rows(os.path.join(out, "steps.csv"), 1)
    tally["step row cut short"] += torn
    if steps is None or not epochs * STEPS_PER_EPOCH <= steps <= (epochs + 1) * STEPS_PER_EPOCH:
        problems.append(f"{what}: the step log has rows {steps}, the checkpoint {epochs} epochs")
    tally["temporary files left by the kill"] += any(".tmp-" in n for n in os.listdir(out)) if os.path.isdir(out) else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kiln")
    ap.add_argument("--kills", type=int, default=50, help="trials (each one to --chain kills)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chain", type=int, default=3, help="most kills in a row before the last resume")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--keep", help="work in this folder and keep it")
    a = ap.parse_args()
    kiln = os.path.abspath(a.kiln)
    work = a.keep or tempfile.mkdtemp(prefix="kiln-kill-")
    os.makedirs(work, exist_ok=True)
    rng = random.Random(a.seed)
    ref = os.path.join(work, "ref")
    shutil.rmtree(ref, ignore_errors=True)
    t0 = time.monotonic()
    subprocess.run(run_args(kiln, ref, a.epochs, False), check=True)
    took = time.monotonic() - t0
    tally, problems = collections.Counter(), []
    for trial in range(a.kills):
        out = os.path.join(work, f"t{trial}")
        shutil.rmtree(out, ignore_errors=True)
        for k in range(rng.randint(1, a.chain)):
            delay = rng.uniform(0.0, took)
            what = f"trial {trial}, kill {k + 1} at {delay * 1e3:.1f} ms of {took * 1e3:.1f}"
            resume = os.path.exists(os.path.join(out, "checkpoint.safetensors"))
            p = subprocess.Popen(run_args(kiln, out, a.epochs, resume), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            _, err = p.communicate()
            tally["kills"] += 1
            if p.returncode == -signal.SIGKILL:
                tally["killed while running"] += 1
            elif p.returncode != 0:
                problems.append(f"{what}: exit {p.returncode}: {err.decode().strip()}")
            check_after_kill(kiln, out, tally, problems, what)
        resume = os.path.exists(os.path.join(out, "checkpoint.safetensors"))
        r = subprocess.run(run_args(kiln, out, a.epochs, resume), capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"trial {trial}: the last resume failed: {r.stderr.strip()}")
            continue
        same = all(open(os.path.join(ref, n), "rb").read() == open(os.path.join(out, n), "rb").read() for n in OUTPUTS)
        tally["resumed runs equal to the uninterrupted one" if same else "resumed runs that differ"] += 1
        if not same:
            problems.append(f"trial {trial}: the resumed run's files differ from the uninterrupted run's")
        if any(".tmp-" in n for n in os.listdir(out)):
            problems.append(f"trial {trial}: temporary files left after the resume: {os.listdir(out)}")
        if not a.keep:
            shutil.rmtree(out)
    for key in sorted(tally):
        print(f"{tally[key]:6d}  {key}")
    for p in problems:
        print("PROBLEM:", p)
    print(f"{len(problems)} problems in {tally['kills']} kills over {a.kills} trials")
    if not a.keep:
        shutil.rmtree(work)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
