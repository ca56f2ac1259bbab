/* test_device_comm.c: the backends' device communicators (backend_impl.h's comm_create,
 * docs/distributed.md "NCCL"). The CPU backend and the CUDA emulator have none (fit takes the
 * host path); on a GPU with NCCL, a one-rank NCCL communicator runs the whole bucket path
 * (event, second stream, scale kernel, grouped ncclAllReduce, wait) and must give what the host
 * path gives: each gradient times the share, bit for bit (one rank's sum is its value, and the
 * scale 0.25 is exact). Skipped, saying so, without a GPU or without NCCL. The two-rank
 * comparison with one process is tests/dist/check_dist.py's `nccl` case (two GPUs). */
#include <stdlib.h>

#include "backend_impl.h"
#include "comm_impl.h"
#include "harness.h"

#define OK(expr) cr_assert_eq((expr), KILN_OK, "%s", kiln_last_error())

Test(device_comm, the_cpu_backend_has_none) {
    kiln_comm *one, *dev = (kiln_comm *)1;
    OK(kiln_comm_single(&one));
    cr_expect_null(kt_cpu()->iface->comm_create, "the CPU backend offers no device communicator");
    OK(kiln_backend_comm_create(kt_cpu(), one, &dev));
    cr_expect_null(dev);
    kiln_comm_free(one);
}

Test(device_comm, the_emulator_has_none) {
    kiln_backend *be = kt_cuda_or_skip();
    if (!kt_is_emulated(be)) cr_skip_test("a real GPU (the emulator's case is for builds without one)");
    kiln_comm *one, *dev = (kiln_comm *)1;
    OK(kiln_comm_single(&one));
    OK(be->iface->comm_create(be, one, &dev));
    cr_expect_null(dev, "the CUDA emulator reports no device communicator");
    kiln_comm_free(one);
}

Test(device_comm, one_nccl_rank_gives_the_host_paths_bits) {
    kiln_backend *be = kt_gpu_or_skip();
    kiln_comm *one, *dev = NULL;
    OK(kiln_comm_single(&one));
    OK(be->iface->comm_create(be, one, &dev));
    if (!dev) cr_skip_test("this kiln was built without NCCL (KILN_NCCL)");
    cr_expect_str_eq(kiln_comm_engine(dev), "nccl");
    int64_t len[3] = {1000, 37, 4096};
    kiln_tensor *g[3], *h[3];
    kt_rng r;
    kt_rng_seed(&r, 77);
    for (int k = 0; k < 3; k++) {
        g[k] = kt_new(be, KILN_F32, 1, &len[k]);
        h[k] = kt_new(kt_cpu(), KILN_F32, 1, &len[k]);
        kt_fill_random(h[k], &r, -2, 2);
        float *v = kt_get_f32(h[k]);
        kt_set_f32(g[k], v);
        free(v);
    }
    OK(kiln_comm_grads_begin(dev, g, 2, 0.25));     /* a bucket of two */
    OK(kiln_comm_grads_begin(dev, g + 2, 1, 0.25)); /* and one of one */
    OK(kiln_comm_grads_wait(dev));
    OK(kiln_comm_grads_begin(one, h, 3, 0.25)); /* the host path */
    for (int k = 0; k < 3; k++) {
        float *a = kt_get_f32(g[k]), *b = kt_get_f32(h[k]);
        kt_expect_bitwise("NCCL bucket vs the host path", a, b, sizeof(float) * (size_t)len[k]);
        free(a);
        free(b);
        kiln_tensor_free(g[k]);
        kiln_tensor_free(h[k]);
    }
    kiln_comm_free(dev);
    kiln_comm_free(one);
}
