/* name_index.c: the index of names of name_index.h: a power-of-two table of ids, probed
 * linearly from the name's FNV-1a hash, kept at most half full. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "name_index.h"

static size_t hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32));
}

/* the slot holding `name`, or the empty slot where it would go */
static size_t probe(const kiln_name_index *x, const char *name, kiln_name_of name_of, const void *owner) {
    size_t i = hash(name) & (x->cap - 1);
    while (x->slot[i] && strcmp(name_of(owner, x->slot[i] - 1), name)) i = (i + 1) & (x->cap - 1);
    return i;
}

int kiln_name_index_find(const kiln_name_index *x, const char *name, kiln_name_of name_of, const void *owner) {
    if (!x->cap || !name) return -1;
    return x->slot[probe(x, name, name_of, owner)] - 1;
}

static kiln_status grow(kiln_name_index *x, kiln_name_of name_of, const void *owner) {
    size_t cap = x->cap ? 2 * x->cap : 64;
    if (cap > SIZE_MAX / sizeof(int)) return kiln_error(KILN_ERR_OOM, "name index: too many names");
    kiln_name_index bigger = {calloc(cap, sizeof(int)), cap, x->n};
    if (!bigger.slot) return kiln_error(KILN_ERR_OOM, "name index: out of host memory");
    for (size_t i = 0; i < x->cap; i++)
        if (x->slot[i]) bigger.slot[probe(&bigger, name_of(owner, x->slot[i] - 1), name_of, owner)] = x->slot[i];
    free(x->slot);
    *x = bigger;
    return KILN_OK;
}

kiln_status kiln_name_index_add(kiln_name_index *x, int id, kiln_name_of name_of, const void *owner) {
    if (2 * (x->n + 1) > x->cap) KILN_TRY(grow(x, name_of, owner));
    x->slot[probe(x, name_of(owner, id), name_of, owner)] = id + 1;
    x->n++;
    return KILN_OK;
}

void kiln_name_index_free(kiln_name_index *x) {
    free(x->slot);
    x->slot = NULL;
    x->cap = x->n = 0;
}
