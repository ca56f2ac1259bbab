/* datafiles.h: what the file-format tests (datasets, safetensors) share: a fresh temporary
 * directory per test, writing bytes raw or gzip-compressed, reading them back, seeded random
 * bytes, the status-and-message check, and an element-by-element dataset check. */
#ifndef KILN_TEST_DATAFILES_H
#define KILN_TEST_DATAFILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "kiln/data.h"

/* A new empty directory under $TMPDIR (or /tmp); the path is static storage. */
const char *kt_tmpdir_new(void);
/* The directory made by kt_tmpdir_new. */
const char *kt_tmpdir(void);
/* Removes the directory made by kt_tmpdir_new and every file in it (one level, plus one level
 * of subdirectories). */
void kt_tmpdir_remove(void);
/* "dir/name" in static storage that lasts until the next 8 calls. */
const char *kt_path(const char *name);
/* Writes bytes to path (gzip-compressed through zlib's gzopen "wb" when gz); asserts success. */
void kt_write_file(const char *path, const void *data, size_t len, bool gz);
/* Reads a whole file (malloc'ed; *len set); NULL when it cannot be read. */
void *kt_read_file(const char *path, size_t *len);
/* Number of entries in dir besides . and .. */
int kt_dir_count(const char *dir);

/* Copies the safetensors file src to dst (full paths) with metadata `key` set to `value` (added
 * when absent): for crafted checkpoints. Asserts success. */
void kt_safetensors_set_meta(const char *src, const char *dst, const char *key, const char *value);

/* Asserts status `want` and a message containing `needle`. */
void kt_expect_error(kiln_status got, kiln_status want, const char *needle);
/* n random bytes, each below mod (malloc'ed). */
uint8_t *kt_random_bytes(kt_rng *r, size_t n, unsigned mod);
/* Every image element of ds equals img[i] / 255 and every label equals lab[i]. */
void kt_expect_u8_images(const kiln_dataset *ds, const uint8_t *img, const uint8_t *lab);

#endif
