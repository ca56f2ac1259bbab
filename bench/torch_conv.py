# bench/torch_conv.py: PyTorch's time for ResNet-20's convolutions at batch 128 (the shapes and
# per-step counts of `kiln-bench conv`'s resnet20 rows, bench/conv_bench.c): forward, and backward
# (input and weight gradients together, through autograd), median of 7 after a warm-up, on N
# threads; prints each shape and the total per training step.
#   usage: python3 bench/torch_conv.py [THREADS]        (Debian's python3-torch; default 1)
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
shapes = [("stem", 128, 32, 32, 3, 3, 16, 1, 1), ("stage 1", 128, 32, 32, 16, 3, 16, 1, 6),
          ("stage 2 in", 128, 32, 32, 16, 3, 32, 2, 1), ("stage 2", 128, 16, 16, 32, 3, 32, 1, 5),
          ("stage 2 shortcut", 128, 32, 32, 16, 1, 32, 2, 1), ("stage 3 in", 128, 16, 16, 32, 3, 64, 2, 1),
          ("stage 3", 128, 8, 8, 64, 3, 64, 1, 5), ("stage 3 shortcut", 128, 16, 16, 32, 1, 64, 2, 1)]
def med(f, reps=7):
    f(); ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2] * 1e3
tot_f = tot_b = 0
for name, n, h, w, c, k, oc, s, count in shapes:
    conv = torch.nn.Conv2d(c, oc, k, stride=s, padding=k // 2)
    x = torch.randn(n, c, h, w, requires_grad=True)
    y = conv(x); gy = torch.randn_like(y)
    f = med(lambda: conv(x))
    def bwd():
        y = conv(x); torch.autograd.grad(y, (x, conv.weight, conv.bias), gy)
    b = med(bwd) - f
    tot_f += f * count; tot_b += b * count
    print(f"{name:18s} x{count}: fwd {f:7.2f} ms  bwd(data+filter) {b:7.2f} ms")
print(f"total per step: fwd {tot_f:.1f} ms, bwd {tot_b:.1f} ms, both {tot_f + tot_b:.1f} ms")
