/* reserved_names.c: the weight names kiln keeps for itself in its checkpoints, and the check
 * that refuses a layer taking them (kiln_model_add calls it; checkpoint.c writes and reads the
 * names). Apart from both so that neither calls the other. */
#include <stdbool.h>
#include <string.h>

#include "error.h"
#include "model_impl.h"

/* Weight names kiln keeps for itself: "optimizer.<weight>.<slot>" holds optimizer state in a
 * full checkpoint, and "kiln." is kiln's own namespace (its metadata keys). A layer named so
 * would have its weights taken for them. */
static const char *const reserved_prefixes[] = {KILN_SLOT_PREFIX, "kiln"};

/* true when name is prefix itself or starts with "prefix." */
static bool has_prefix(const char *name, const char *prefix) {
    size_t n = strlen(prefix);
    return !strncmp(name, prefix, n) && (name[n] == '\0' || name[n] == '.');
}

kiln_status kiln_layer_name_check_reserved(const char *layer) {
    for (size_t i = 0; i < sizeof reserved_prefixes / sizeof *reserved_prefixes; i++)
        if (has_prefix(layer, reserved_prefixes[i]))
            return kiln_error(KILN_ERR_INVALID_ARG, "layer '%.*s': names '%s' and '%s.*' are reserved (kiln's checkpoints "
                              "use them for %s); rename the layer", KILN_NAME_MAX - 1, layer, reserved_prefixes[i], reserved_prefixes[i],
                              i == 0 ? "the optimizer's state" : "their own entries");
    return KILN_OK;
}
