/* name_index.h: an index of names (open addressing over FNV-1a hashes) for the model's layer
 * names and the JSON reader's, so that looking a layer up by name costs O(1) and building a
 * graph of n layers O(n) (internal). The index holds ids; the names stay with their owner, who
 * gives them back through a kiln_name_of callback. */
#ifndef KILN_NAME_INDEX_H
#define KILN_NAME_INDEX_H

#include <stddef.h>

#include "kiln/status.h"

typedef const char *(*kiln_name_of)(const void *owner, int id);

typedef struct kiln_name_index {
    int *slot; /* id + 1, or 0 for an empty slot */
    size_t cap, n;
} kiln_name_index;

/* The id whose name is `name`, or -1. */
int kiln_name_index_find(const kiln_name_index *x, const char *name, kiln_name_of name_of, const void *owner);
/* Adds id (its name must not be in the index yet). */
kiln_status kiln_name_index_add(kiln_name_index *x, int id, kiln_name_of name_of, const void *owner);
void kiln_name_index_free(kiln_name_index *x);

#endif
