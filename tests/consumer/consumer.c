/* consumer.c: the smallest program using an installed kiln: add two vectors on the CPU. */
#include <kiln/kiln.h>
#include <stdio.h>

int main(void) {
    kiln_backend *be = NULL;
    kiln_tensor *a = NULL, *b = NULL;
    int64_t shape[] = {3};
    float x[3] = {1, 2, 3}, y[3];
    if (kiln_backend_init("cpu", &be) || kiln_tensor_new(be, KILN_F32, 1, shape, "a", &a) ||
        kiln_tensor_new(be, KILN_F32, 1, shape, "b", &b) || kiln_tensor_set(a, x, sizeof x) ||
        kiln_add(a, a, b) || kiln_tensor_get(b, y, sizeof y)) {
        fprintf(stderr, "consumer: %s\n", kiln_last_error());
        return 1;
    }
    if (y[0] != 2 || y[1] != 4 || y[2] != 6) {
        fprintf(stderr, "consumer: wrong sums %g %g %g\n", y[0], y[1], y[2]);
        return 1;
    }
    printf("consumer: installed kiln works (%s)\n", kiln_backend_name(be));
    kiln_tensor_free(a);
    kiln_tensor_free(b);
    kiln_backend_free(be);
    return 0;
}
