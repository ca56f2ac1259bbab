/* datafiles.c: the file-format test helpers of datafiles.h. */
#define _POSIX_C_SOURCE 200809L
#include "datafiles.h"
#include "kiln/safetensors.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[512];

const char *kt_tmpdir_new(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/kiln-test-XXXXXX", base && *base ? base : "/tmp");
    cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp %s failed", tmpdir);
    return tmpdir;
}

const char *kt_tmpdir(void) { return tmpdir; }

static void remove_tree(const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && depth < 2) remove_tree(p, depth + 1);
        else unlink(p);
    }
    closedir(d);
    chmod(dir, 0700);
    rmdir(dir);
}

void kt_tmpdir_remove(void) {
    if (tmpdir[0]) remove_tree(tmpdir, 0);
    tmpdir[0] = '\0';
}

const char *kt_path(const char *name) {
    static char ring[8][1024];
    static int next;
    char *p = ring[next++ % 8];
    snprintf(p, sizeof ring[0], "%s/%s", tmpdir, name);
    return p;
}

void kt_write_file(const char *path, const void *data, size_t len, bool gz) {
    if (gz) {
        gzFile g = gzopen(path, "wb");
        cr_assert_not_null(g, "gzopen %s", path);
        cr_assert_eq(len ? gzwrite(g, data, (unsigned)len) : 0, (int)len, "gzwrite %s", path);
        cr_assert_eq(gzclose(g), Z_OK, "gzclose %s", path);
        return;
    }
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "fopen %s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len, "fwrite %s", path);
    cr_assert_eq(fclose(f), 0, "fclose %s", path);
}

void *kt_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    for (size_t got; p && (got = fread(p + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) p = realloc(p, cap *= 2);
    }
    fclose(f);
    *len = n;
    return p;
}

int kt_dir_count(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

void kt_safetensors_set_meta(const char *src, const char *dst, const char *key, const char *value) {
    kiln_safetensors *st;
    cr_assert_eq(kiln_safetensors_open(src, &st), KILN_OK, "%s", kiln_last_error());
    kiln_st_tensor *t = calloc(st->n_entries + 1, sizeof *t);
    kiln_st_meta *meta = calloc(st->n_meta + 1, sizeof *meta);
    cr_assert(t && meta);
    for (size_t i = 0; i < st->n_entries; i++) {
        const kiln_st_entry *e = &st->entries[i];
        t[i] = (kiln_st_tensor){e->name, e->dtype, e->ndim, e->shape, e->data};
    }
    size_t n_meta = 0;
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[i].key, key)) meta[n_meta++] = st->meta[i];
    meta[n_meta++] = (kiln_st_meta){key, value};
    cr_assert_eq(kiln_safetensors_write(dst, t, st->n_entries, meta, n_meta), KILN_OK, "%s", kiln_last_error());
    free(t);
    free(meta);
    kiln_safetensors_free(st);
}

void kt_expect_error(kiln_status got, kiln_status want, const char *needle) {
    cr_assert_eq(got, want, "status %s, want %s (%s)", kiln_status_name(got), kiln_status_name(want),
                 kiln_last_error());
    cr_assert(strstr(kiln_last_error(), needle), "message '%s' lacks '%s'", kiln_last_error(), needle);
}

uint8_t *kt_random_bytes(kt_rng *r, size_t n, unsigned mod) {
    uint8_t *p = malloc(n ? n : 1);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(kt_next(r) % mod);
    return p;
}

void kt_expect_u8_images(const kiln_dataset *ds, const uint8_t *img, const uint8_t *lab) {
    size_t per = kiln_dataset_image_numel(ds);
    for (size_t i = 0; i < (size_t)ds->n * per; i++)
        cr_assert_eq(ds->images[i], (float)img[i] / 255.0f, "%s: image element %zu: %g, want %d/255", ds->source, i,
                     (double)ds->images[i], img[i]);
    for (int64_t i = 0; i < ds->n; i++)
        cr_assert_eq(ds->labels[i], lab[i], "%s: label %lld: %d, want %d", ds->source, (long long)i, ds->labels[i],
                     lab[i]);
}
