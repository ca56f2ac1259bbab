/* model_json_layer.c: one Keras layer's JSON config (Keras 2 or 3, as model.to_json() writes
 * it) into a kiln_layer_config: its class, then the keys every layer has (name, dtype,
 * trainable), then its own keys, which its descriptor's read_json reads. kiln reads every
 * option that changes what a layer computes and refuses, naming the layer and the option, what
 * it cannot do exactly; options that only matter to Keras (initializers, dtype policies of
 * float32, names of Keras internals) are ignored, and initial weights are Keras' defaults. */
#include <string.h>

#include "layer.h"
#include "layer_json.h"
#include "model_json_impl.h"
#include "weight_options.h"

static kiln_status dtype_float32(const kiln_json_layer *j) {
    const cJSON *v = kiln_json_get(j, "dtype");
    if (cJSON_IsObject(v)) /* Keras 3's DTypePolicy {"config": {"name": "float32"}} */
        v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(v, "config"), "name");
    if (kiln_json_absent(v) || (cJSON_IsString(v) && !strcmp(v->valuestring, "float32"))) return KILN_OK;
    return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "dtype %s is not supported (float32 only)",
                          cJSON_IsString(v) ? v->valuestring : "(not a name)");
}

int kiln_layer_output_rank(const kiln_layer_config *c, int in_rank) {
    const kiln_layer_desc *d = kiln_layer_desc_of(c->type);
    return d && d->out_rank ? d->out_rank(c, in_rank) : in_rank;
}

kiln_status kiln_layer_config_from_json(const char *cls, const cJSON *cfg, int in_rank, kiln_layer_config *out) {
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(cfg, "name");
    kiln_json_layer j = {cJSON_IsString(nm) ? nm->valuestring : "", cls ? cls : "?", cfg};
    if (!cJSON_IsObject(cfg)) return kiln_json_fail(&j, KILN_ERR_FORMAT, "its config is not an object");
    kiln_layer_type t = kiln_layer_type_of_class(cls);
    if (t == KILN_LAYER_TYPE_COUNT) {
        char known[512];
        kiln_layer_class_list(known, sizeof known);
        return kiln_json_fail(&j, KILN_ERR_UNSUPPORTED, "layer class %s is not supported (%s)", j.cls, known);
    }
    if (strlen(j.name) >= KILN_NAME_MAX)
        return kiln_json_fail(&j, KILN_ERR_UNSUPPORTED, "names are at most %d characters", KILN_NAME_MAX - 1);
    KILN_TRY(dtype_float32(&j));
    *out = kiln_layer_defaults(t);
    const kiln_layer_desc *d = kiln_layer_desc_of(t);
    KILN_TRY(kiln_weight_options_read(&j, out));
    /* the layer reads its config without the initializer and regularizer keys, read above */
    cJSON *own = cJSON_Duplicate(cfg, true);
    if (!own) return kiln_error(KILN_ERR_OOM, "model JSON: layer '%s': out of host memory", j.name);
    for (cJSON *v = own->child, *next; v; v = next) {
        next = v->next;
        if (kiln_weight_options_key(v->string)) cJSON_Delete(cJSON_DetachItemViaPointer(own, v));
    }
    kiln_json_layer jo = {j.name, j.cls, own};
    kiln_status s = d->read_json ? d->read_json(&jo, out, in_rank) : KILN_OK;
    cJSON_Delete(own);
    KILN_TRY(s);
    snprintf(out->name, sizeof out->name, "%s", j.name);
    return kiln_json_bool(&j, "trainable", true, &out->trainable);
}
