/* keras_file.h: Keras 3's weight layout and files, for checkpoint.c and the tests (internal);
 * the public side is kiln_model_save_keras, kiln_model_save_weights_h5 and
 * kiln_model_from_keras (kiln/model.h). */
#ifndef KILN_KERAS_FILE_H
#define KILN_KERAS_FILE_H

#include <stddef.h>

#include "model_impl.h"

/* Loads the weights of the Keras .keras archive or .weights.h5 file at path (told by content)
 * into the built model m, by Keras' layer paths; with subset, layers the file lacks keep their
 * weights. Every variable is checked before any is loaded. */
kiln_status kiln_model_load_keras(kiln_model *m, const char *path, bool subset);
/* The same from the file's bytes buf[0..len) (`file` names them in messages): the fuzz target's
 * entry. */
kiln_status kiln_model_load_keras_bytes(kiln_model *m, const void *buf, size_t len, const char *file, bool subset);
/* The config.json of the .keras archive buf[0..len) (malloc'ed, NUL-terminated; free with free()). */
kiln_status kiln_keras_config(const void *buf, size_t len, const char *file, char **json, size_t *json_len);

/* Keras' naming.to_snake_case of a class name: "BatchNormalization" -> "batch_normalization",
 * "Conv2D" -> "conv2d", "ReLU" -> "re_lu" (the name of its group in a weights file) */
void kiln_keras_snake_case(const char *cls, char *out, size_t n);

/* Node n's weights in Keras' variable order (order[k]: the weight index of variable k); their
 * count. The declared order unless the layer's descriptor lists keras_vars (layer.h). */
int kiln_keras_var_order(const kiln_node *n, int order[KILN_MAX_WEIGHTS]);

#endif
