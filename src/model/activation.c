/* activation.c: the `activation` argument of Conv2D, Dense and Activation, forward and
 * backward, mapped onto the ops. Softmax's backward is the full Jacobian-vector product
 * dz = y * (dy - sum(dy * y)); a softmax feeding a cross-entropy loss never takes this path
 * (the loss is fused: docs/training.md). */
#include "error.h"
#include "model_impl.h"

kiln_status kiln_activation_forward(kiln_activation a, const kiln_tensor *z, kiln_tensor *y) {
    switch (a) {
    case KILN_ACT_LINEAR: return z == y ? KILN_OK : kiln_copy(z, y);
    case KILN_ACT_RELU: return kiln_relu(z, y);
    case KILN_ACT_SOFTMAX: return kiln_softmax(z, y);
    case KILN_ACT_SIGMOID: return kiln_sigmoid(z, y);
    case KILN_ACT_TANH: return kiln_tanh(z, y);
    default: return kiln_error(KILN_ERR_UNSUPPORTED, "unknown activation %d", (int)a);
    }
}

kiln_status kiln_activation_backward(kiln_activation a, const kiln_tensor *z, const kiln_tensor *y,
                                     const kiln_tensor *dy, kiln_tensor *dz) {
    switch (a) {
    case KILN_ACT_LINEAR: return dy == dz ? KILN_OK : kiln_copy(dy, dz);
    case KILN_ACT_RELU: return kiln_relu_backward(z, dy, dz);
    case KILN_ACT_SIGMOID: return kiln_sigmoid_backward(y, dy, dz);
    case KILN_ACT_TANH: return kiln_tanh_backward(y, dy, dz);
    case KILN_ACT_SOFTMAX: {
        return kiln_error(KILN_ERR_UNSUPPORTED,
                          "softmax backward outside a cross-entropy loss is not supported: "
                          "put softmax on the last layer with a cross-entropy loss");
    }
    default: return kiln_error(KILN_ERR_UNSUPPORTED, "unknown activation %d", (int)a);
    }
}
