/* registry.c: the registered layers, one per line of KILN_LAYER_LIST (kiln/model.h), each the
 * descriptor its file in this folder defines: the one table the model, the graph, the summary
 * and the Keras JSON reader and writer look layers up in. */
#include <stdio.h>
#include <string.h>

#include "layer.h"

#define KILN_LAYER_DECLARE_(id, name) extern const kiln_layer_desc kiln_layer_##name;
KILN_LAYER_LIST(KILN_LAYER_DECLARE_)
#undef KILN_LAYER_DECLARE_

#define KILN_LAYER_ENTRY_(id, name) [KILN_LAYER_##id] = &kiln_layer_##name,
static const kiln_layer_desc *const layers[KILN_LAYER_TYPE_COUNT] = {KILN_LAYER_LIST(KILN_LAYER_ENTRY_)};
#undef KILN_LAYER_ENTRY_

const kiln_layer_desc *kiln_layer_desc_of(kiln_layer_type t) {
    return (int)t >= 0 && t < KILN_LAYER_TYPE_COUNT ? layers[t] : NULL;
}

const char *kiln_layer_type_name(kiln_layer_type t) {
    const kiln_layer_desc *d = kiln_layer_desc_of(t);
    if (d) return d->keras_class;
    kiln_error(KILN_ERR_INVALID_ARG, "kiln_layer_type_name: unknown layer type %d", (int)t);
    return "?";
}

kiln_layer_type kiln_layer_type_of_class(const char *cls) {
    for (int t = 0; cls && t < KILN_LAYER_TYPE_COUNT; t++)
        if (!strcmp(cls, layers[t]->keras_class)) return (kiln_layer_type)t;
    return KILN_LAYER_TYPE_COUNT;
}

void kiln_layer_class_list(char *buf, size_t n) {
    size_t o = 0;
    buf[0] = '\0';
    for (int t = 0; t < KILN_LAYER_TYPE_COUNT && o < n; t++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", t ? ", " : "", layers[t]->keras_class);
}
