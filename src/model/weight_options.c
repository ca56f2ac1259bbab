/* weight_options.c: the initializers and regularizers a layer's config gives its weights
 * (kiln_weight_options, kiln/model.h): Keras' names and defaults, setting them from the C API,
 * finding a weight's entry when the layer declares it, and the Keras JSON keys
 * "<weight>_initializer" / "<weight>_regularizer" (a name, or {"class_name", "config"}), read
 * and written back. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "layer_json.h"
#include "weight_options.h"

/* Keras' initializers: the snake_case name, the class, and what it draws with its defaults */
typedef struct init_name {
    const char *name, *cls;
    kiln_init_kind kind;
    double a, b, scale;
    kiln_fan_mode mode;
    kiln_init_distribution dist;
} init_name;

static const init_name inits[] = {
    {"glorot_uniform", "GlorotUniform", KILN_INIT_GLOROT_UNIFORM, 0, 0, 1, KILN_FAN_AVG, KILN_DIST_UNIFORM},
    {"glorot_normal", "GlorotNormal", KILN_INIT_VARIANCE_SCALING, 0, 0, 1, KILN_FAN_AVG, KILN_DIST_TRUNCATED_NORMAL},
    {"he_normal", "HeNormal", KILN_INIT_VARIANCE_SCALING, 0, 0, 2, KILN_FAN_IN, KILN_DIST_TRUNCATED_NORMAL},
    {"he_uniform", "HeUniform", KILN_INIT_VARIANCE_SCALING, 0, 0, 2, KILN_FAN_IN, KILN_DIST_UNIFORM},
    {"lecun_normal", "LecunNormal", KILN_INIT_VARIANCE_SCALING, 0, 0, 1, KILN_FAN_IN, KILN_DIST_TRUNCATED_NORMAL},
    {"lecun_uniform", "LecunUniform", KILN_INIT_VARIANCE_SCALING, 0, 0, 1, KILN_FAN_IN, KILN_DIST_UNIFORM},
    {"variance_scaling", "VarianceScaling", KILN_INIT_VARIANCE_SCALING, 0, 0, 1, KILN_FAN_IN, KILN_DIST_TRUNCATED_NORMAL},
    {"random_normal", "RandomNormal", KILN_INIT_RANDOM_NORMAL, 0.0, 0.05, 0, 0, 0},
    {"random_uniform", "RandomUniform", KILN_INIT_RANDOM_UNIFORM, -0.05, 0.05, 0, 0, 0},
    {"truncated_normal", "TruncatedNormal", KILN_INIT_TRUNCATED_NORMAL, 0.0, 0.05, 0, 0, 0},
    {"zeros", "Zeros", KILN_INIT_CONSTANT, 0, 0, 0, 0, 0},
    {"ones", "Ones", KILN_INIT_CONSTANT, 1, 0, 0, 0, 0},
    {"constant", "Constant", KILN_INIT_CONSTANT, 0, 0, 0, 0, 0},
    {"orthogonal", "Orthogonal", KILN_INIT_ORTHOGONAL, 0, 0, 1, 0, 0},
    /* Keras' other aliases */
    {"zero", "Zeros", KILN_INIT_CONSTANT, 0, 0, 0, 0, 0},
    {"one", "Ones", KILN_INIT_CONSTANT, 1, 0, 0, 0, 0},
    {"normal", "RandomNormal", KILN_INIT_RANDOM_NORMAL, 0.0, 0.05, 0, 0, 0},
    {"uniform", "RandomUniform", KILN_INIT_RANDOM_UNIFORM, -0.05, 0.05, 0, 0, 0},
};
#define N_INITS (int)(sizeof inits / sizeof inits[0])
#define KNOWN_INITS "glorot_uniform, glorot_normal, he_normal, he_uniform, lecun_normal, lecun_uniform, " \
                    "variance_scaling, random_normal, random_uniform, truncated_normal, zeros, ones, constant, orthogonal"

static const char *const modes[] = {"fan_in", "fan_out", "fan_avg"};
static const char *const dists[] = {"truncated_normal", "untruncated_normal", "uniform"};

static const init_name *init_lookup(const char *name) {
    for (int i = 0; name && i < N_INITS; i++)
        if (!strcmp(name, inits[i].name) || !strcmp(name, inits[i].cls)) return &inits[i];
    return NULL;
}

kiln_status kiln_initializer_parse(const char *name, kiln_init_spec *out) {
    const init_name *e = init_lookup(name);
    if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_initializer_parse: out is NULL");
    if (!e) return kiln_error(KILN_ERR_UNSUPPORTED, "initializer '%s' is not supported (%s)", name ? name : "(null)", KNOWN_INITS);
    memset(out, 0, sizeof *out);
    out->kind = e->kind;
    out->value = e->a;
    out->a = e->a;
    out->b = e->b;
    out->scale = e->scale;
    out->mode = e->mode;
    out->distribution = e->dist;
    snprintf(out->keras_class, sizeof out->keras_class, "%s", e->cls);
    return KILN_OK;
}

/* the entry of c for `weight`, a new one when `add` (NULL when full or absent) */
static kiln_weight_options *entry(kiln_layer_config *c, const char *weight, bool add) {
    for (int i = 0; i < KILN_LAYER_WEIGHT_OPTIONS; i++)
        if (!strcmp(c->weight_opts[i].weight, weight)) return &c->weight_opts[i];
    for (int i = 0; add && i < KILN_LAYER_WEIGHT_OPTIONS; i++)
        if (!c->weight_opts[i].weight[0]) {
            snprintf(c->weight_opts[i].weight, sizeof c->weight_opts[i].weight, "%s", weight);
            return &c->weight_opts[i];
        }
    return NULL;
}

static kiln_status entry_for(kiln_layer_config *c, const char *weight, kiln_weight_options **out) {
    if (!c || !weight || !*weight || strlen(weight) >= sizeof c->weight_opts[0].weight)
        return kiln_error(KILN_ERR_INVALID_ARG, "weight options: a layer config and a weight name of 1 to %d characters are needed",
                          (int)sizeof c->weight_opts[0].weight - 1);
    if (!(*out = entry(c, weight, true)))
        return kiln_error(KILN_ERR_INVALID_ARG, "layer '%s': more than %d weights with an initializer or a regularizer",
                          c->name, KILN_LAYER_WEIGHT_OPTIONS);
    return KILN_OK;
}

static bool finite_nonneg(double v) { return isfinite(v) && v >= 0.0; }

/* the parameters' checks: "" when fine, else what is wrong */
static const char *init_problem(const kiln_init_spec *in) {
    if ((int)in->kind < 0 || in->kind >= KILN_INIT_KIND_COUNT || (int)in->mode < 0 || in->mode > KILN_FAN_AVG ||
        (int)in->distribution < 0 || in->distribution > KILN_DIST_UNIFORM)
        return "unknown kind, mode or distribution";
    bool bad = in->kind == KILN_INIT_ORTHOGONAL       ? !isfinite(in->scale)
             : in->kind == KILN_INIT_VARIANCE_SCALING ? !(in->scale > 0.0 && isfinite(in->scale))
             : in->kind == KILN_INIT_RANDOM_UNIFORM  ? !(isfinite(in->a) && isfinite(in->b) && in->a <= in->b)
             : in->kind >= KILN_INIT_RANDOM_NORMAL   ? !(isfinite(in->a) && finite_nonneg(in->b))
                                                      : !isfinite(in->value);
    return bad ? "parameters out of range (scale > 0, stddev >= 0, minval <= maxval, all finite)" : "";
}

kiln_status kiln_layer_set_initializer(kiln_layer_config *c, const char *weight, kiln_init_spec init) {
    kiln_weight_options *o;
    const char *problem = init_problem(&init);
    if (*problem) return kiln_error(KILN_ERR_INVALID_ARG, "initializer of '%s': %s", weight ? weight : "?", problem);
    KILN_TRY(entry_for(c, weight, &o));
    o->has_init = true;
    o->init = init;
    return KILN_OK;
}

kiln_status kiln_layer_set_regularizer(kiln_layer_config *c, const char *weight, kiln_regularizer reg) {
    kiln_weight_options *o;
    if (!finite_nonneg(reg.l1) || !finite_nonneg(reg.l2))
        return kiln_error(KILN_ERR_INVALID_ARG, "regularizer of '%s': l1 %g and l2 %g must be finite and >= 0",
                          weight ? weight : "?", reg.l1, reg.l2);
    KILN_TRY(entry_for(c, weight, &o));
    o->reg = reg;
    return KILN_OK;
}

kiln_status kiln_weight_options_check(const kiln_layer_config *c) {
    for (int i = 0; i < KILN_LAYER_WEIGHT_OPTIONS; i++) {
        const kiln_weight_options *e = &c->weight_opts[i];
        if (!memchr(e->weight, '\0', sizeof e->weight) || !memchr(e->init.keras_class, '\0', sizeof e->init.keras_class))
            return kiln_error(KILN_ERR_INVALID_ARG, "a weight option of the layer is not terminated within its array");
        const char *problem = e->has_init ? init_problem(&e->init) : "";
        if (!*problem && !(finite_nonneg(e->reg.l1) && finite_nonneg(e->reg.l2))) problem = "regularizer's l1 or l2 not finite and >= 0";
        if (*problem) return kiln_error(KILN_ERR_INVALID_ARG, "layer '%.63s': weight '%s': %s", c->name, e->weight, problem);
    }
    return KILN_OK;
}

const kiln_weight_options *kiln_weight_options_find(const kiln_layer_config *c, const char *weight) {
    size_t wl = strlen(weight);
    for (int i = 0; i < KILN_LAYER_WEIGHT_OPTIONS; i++) {
        const char *p = c->weight_opts[i].weight;
        size_t pl = strlen(p);
        if (!pl) continue;
        if (!strcmp(p, weight) || (wl == pl + 7 && !strncmp(weight, p, pl) && !strcmp(weight + pl, "_kernel"))) return &c->weight_opts[i];
    }
    /* Keras 3's DepthwiseConv2D: depthwise_initializer is its weight "kernel"'s */
    return strcmp(weight, "kernel") ? NULL : kiln_weight_options_find(c, "depthwise");
}

/* ---- Keras JSON ---- */

static kiln_status json_number(const kiln_json_layer *j, const char *key, const cJSON *cfg, const char *name, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(cfg, name);
    if (kiln_json_absent(x)) return KILN_OK;
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
        return kiln_json_fail(j, KILN_ERR_FORMAT, "%s: %s must be a number", key, name);
    *v = x->valuedouble;
    return KILN_OK;
}

static kiln_status json_pick(const kiln_json_layer *j, const char *key, const cJSON *cfg, const char *name,
                             const char *const *names, int n, int *out) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(cfg, name);
    if (kiln_json_absent(x)) return KILN_OK;
    for (int i = 0; cJSON_IsString(x) && i < n; i++)
        if (!strcmp(x->valuestring, names[i])) {
            *out = i;
            return KILN_OK;
        }
    if (cJSON_IsString(x) && !strcmp(x->valuestring, "normal")) { /* Keras 2's name of the truncated normal */
        *out = KILN_DIST_TRUNCATED_NORMAL;
        return KILN_OK;
    }
    return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "%s: %s must be one of %s, %s, %s", key, name, names[0], names[1], names[2]);
}

/* an initializer's "config": its parameters and seed */
static kiln_status init_config(const kiln_json_layer *j, const char *key, const cJSON *cfg, kiln_init_spec *in) {
    if (kiln_json_absent(cfg)) return KILN_OK;
    if (!cJSON_IsObject(cfg)) return kiln_json_fail(j, KILN_ERR_FORMAT, "%s: its config is not an object", key);
    bool uniform = in->kind == KILN_INIT_RANDOM_UNIFORM;
    KILN_TRY(json_number(j, key, cfg, uniform ? "minval" : "mean", &in->a));
    KILN_TRY(json_number(j, key, cfg, uniform ? "maxval" : "stddev", &in->b));
    KILN_TRY(json_number(j, key, cfg, "value", &in->value));
    if (in->kind == KILN_INIT_ORTHOGONAL) KILN_TRY(json_number(j, key, cfg, "gain", &in->scale));
    if (!strcmp(in->keras_class, "VarianceScaling")) {
        int mode = (int)in->mode, dist = (int)in->distribution;
        KILN_TRY(json_number(j, key, cfg, "scale", &in->scale));
        KILN_TRY(json_pick(j, key, cfg, "mode", modes, 3, &mode));
        KILN_TRY(json_pick(j, key, cfg, "distribution", dists, 3, &dist));
        in->mode = (kiln_fan_mode)mode;
        in->distribution = (kiln_init_distribution)dist;
    }
    static const char *const axes[] = {"input_axes", "output_axes"}; /* Keras 3.15: other fans */
    for (int k = 0; k < 2; k++)
        if (!kiln_json_absent(cJSON_GetObjectItemCaseSensitive(cfg, axes[k])))
            return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "%s: %s is not supported (null only)", key, axes[k]);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(cfg, "seed");
    if (kiln_json_absent(seed)) return KILN_OK;
    if (!cJSON_IsNumber(seed) || !(seed->valuedouble >= 0 && seed->valuedouble <= 9007199254740992.0) ||
        seed->valuedouble != floor(seed->valuedouble))
        return kiln_json_fail(j, KILN_ERR_FORMAT, "%s: seed must be null or an integer in [0, 2^53]", key);
    in->seeded = true;
    in->seed = (uint64_t)seed->valuedouble;
    return KILN_OK;
}

/* one "<w>_initializer" value: a name, or {"class_name": ..., "config": {...}} */
static kiln_status read_init(const kiln_json_layer *j, const char *key, const cJSON *v, kiln_init_spec *in) {
    const cJSON *cls = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "class_name") : v;
    if (!cJSON_IsString(cls))
        return kiln_json_fail(j, KILN_ERR_FORMAT, "%s must be an initializer's name or {\"class_name\", \"config\"}", key);
    if (kiln_initializer_parse(cls->valuestring, in) != KILN_OK)
        return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "%s '%s' is not supported (%s)", key, cls->valuestring, KNOWN_INITS);
    if (cJSON_IsObject(v)) KILN_TRY(init_config(j, key, cJSON_GetObjectItemCaseSensitive(v, "config"), in));
    const char *problem = init_problem(in);
    return *problem ? kiln_json_fail(j, KILN_ERR_FORMAT, "%s: %s", key, problem) : KILN_OK;
}

/* one "<w>_regularizer" value: "l1", "l2", "l1_l2", or {"class_name": "L1" | "L2" | "L1L2", "config"} */
static kiln_status read_reg(const kiln_json_layer *j, const char *key, const cJSON *v, kiln_regularizer *r) {
    const cJSON *cls = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "class_name") : v;
    const char *n = cJSON_IsString(cls) ? cls->valuestring : "";
    bool l1 = !strcmp(n, "l1") || !strcmp(n, "L1"), l2 = !strcmp(n, "l2") || !strcmp(n, "L2");
    bool both = !strcmp(n, "l1_l2") || !strcmp(n, "L1L2");
    if (!l1 && !l2 && !both)
        return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "%s '%s' is not supported (l1, l2, l1_l2: L1, L2, L1L2)", key,
                              *n ? n : "(not a name)");
    /* Keras' defaults: L1(0.01), L2(0.01), L1L2(0, 0); the string l1_l2 is L1L2(0.01, 0.01) */
    r->l1 = l1 || (both && !cJSON_IsObject(v)) ? 0.01 : 0.0;
    r->l2 = l2 || (both && !cJSON_IsObject(v)) ? 0.01 : 0.0;
    const cJSON *cfg = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "config") : NULL;
    if (!kiln_json_absent(cfg) && !cJSON_IsObject(cfg)) return kiln_json_fail(j, KILN_ERR_FORMAT, "%s: its config is not an object", key);
    if (!l2) KILN_TRY(json_number(j, key, cfg, "l1", &r->l1));
    if (!l1) KILN_TRY(json_number(j, key, cfg, "l2", &r->l2));
    if (!finite_nonneg(r->l1) || !finite_nonneg(r->l2))
        return kiln_json_fail(j, KILN_ERR_FORMAT, "%s: l1 and l2 must be >= 0", key);
    return KILN_OK;
}

/* the weight prefix of key "<w><suffix>" into w (false: not such a key) */
static bool key_weight(const char *key, const char *suffix, char *w, size_t n) {
    size_t kl = strlen(key), sl = strlen(suffix);
    if (kl <= sl || strcmp(key + kl - sl, suffix) || kl - sl >= n) return false;
    memcpy(w, key, kl - sl);
    w[kl - sl] = '\0';
    return true;
}

bool kiln_weight_options_key(const char *key) {
    char w[64];
    return strcmp(key, "activity_regularizer") &&
           (key_weight(key, "_initializer", w, sizeof w) || key_weight(key, "_regularizer", w, sizeof w));
}

kiln_status kiln_weight_options_read(const kiln_json_layer *j, kiln_layer_config *c) {
    const cJSON *v;
    cJSON_ArrayForEach(v, j->cfg) {
        char w[64];
        if (!kiln_weight_options_key(v->string) || kiln_json_absent(v)) continue;
        bool init = key_weight(v->string, "_initializer", w, sizeof w);
        if (!init) key_weight(v->string, "_regularizer", w, sizeof w);
        if (strlen(w) >= sizeof c->weight_opts[0].weight)
            return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "%s: the weight name is too long", v->string);
        kiln_init_spec in;
        kiln_regularizer r = {0, 0};
        KILN_TRY(init ? read_init(j, v->string, v, &in) : read_reg(j, v->string, v, &r));
        kiln_status s = init ? kiln_layer_set_initializer(c, w, in) : kiln_layer_set_regularizer(c, w, r);
        if (s != KILN_OK) return kiln_json_fail(j, KILN_ERR_UNSUPPORTED, "%s: %s", v->string, kiln_last_error());
    }
    return KILN_OK;
}

static const char *init_class(const kiln_init_spec *in) {
    static const char *const by_kind[] = {"Constant", "GlorotUniform", "VarianceScaling", "RandomNormal", "RandomUniform",
                                          "TruncatedNormal", "Orthogonal"};
    return in->keras_class[0] ? in->keras_class : by_kind[in->kind];
}

static cJSON *init_json(const kiln_init_spec *in) {
    const char *cls = init_class(in);
    cJSON *o = cJSON_CreateObject(), *cfg;
    cJSON_AddStringToObject(o, "module", "keras.initializers");
    cJSON_AddStringToObject(o, "class_name", cls);
    cfg = cJSON_AddObjectToObject(o, "config");
    cJSON_AddNullToObject(o, "registered_name");
    if (in->kind == KILN_INIT_CONSTANT) {
        if (!strcmp(cls, "Constant")) cJSON_AddNumberToObject(cfg, "value", in->value);
        return o;
    }
    bool uniform = in->kind == KILN_INIT_RANDOM_UNIFORM;
    bool plain = in->kind >= KILN_INIT_RANDOM_NORMAL && in->kind <= KILN_INIT_TRUNCATED_NORMAL;
    if (in->kind == KILN_INIT_ORTHOGONAL) cJSON_AddNumberToObject(cfg, "gain", in->scale);
    if (plain) cJSON_AddNumberToObject(cfg, uniform ? "minval" : "mean", in->a);
    if (plain) cJSON_AddNumberToObject(cfg, uniform ? "maxval" : "stddev", in->b);
    if (!strcmp(cls, "VarianceScaling")) {
        cJSON_AddNumberToObject(cfg, "scale", in->scale);
        cJSON_AddStringToObject(cfg, "mode", modes[in->mode]);
        cJSON_AddStringToObject(cfg, "distribution", dists[in->distribution]);
    }
    if (in->seeded) cJSON_AddNumberToObject(cfg, "seed", (double)in->seed);
    else cJSON_AddNullToObject(cfg, "seed");
    return o;
}

static cJSON *reg_json(const kiln_regularizer *r) {
    cJSON *o = cJSON_CreateObject(), *cfg;
    const char *cls = r->l1 != 0.0 && r->l2 != 0.0 ? "L1L2" : r->l1 != 0.0 ? "L1" : "L2";
    cJSON_AddStringToObject(o, "module", "keras.regularizers");
    cJSON_AddStringToObject(o, "class_name", cls);
    cfg = cJSON_AddObjectToObject(o, "config");
    if (strcmp(cls, "L2")) cJSON_AddNumberToObject(cfg, "l1", r->l1);
    if (strcmp(cls, "L1")) cJSON_AddNumberToObject(cfg, "l2", r->l2);
    cJSON_AddNullToObject(o, "registered_name");
    return o;
}

void kiln_weight_options_write(const kiln_layer_config *c, cJSON *o) {
    for (int i = 0; i < KILN_LAYER_WEIGHT_OPTIONS; i++) {
        const kiln_weight_options *e = &c->weight_opts[i];
        char key[64];
        if (!e->weight[0]) continue;
        if (e->has_init) {
            snprintf(key, sizeof key, "%s_initializer", e->weight);
            cJSON_AddItemToObject(o, key, init_json(&e->init));
        }
        if (e->reg.l1 != 0.0 || e->reg.l2 != 0.0) {
            snprintf(key, sizeof key, "%s_regularizer", e->weight);
            cJSON_AddItemToObject(o, key, reg_json(&e->reg));
        }
    }
}
