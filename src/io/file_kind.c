/* file_kind.c: telling a file's kind by its signature (file_kind.h). */
#include "file_kind.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "kiln/safetensors.h"

kiln_file_kind kiln_file_kind_sniff(const unsigned char *head, size_t n) {
    static const unsigned char hdf5[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (n == 0) return KILN_FILE_EMPTY;
    if (n >= 4 && head[0] == 'P' && head[1] == 'K' && ((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6)))
        return KILN_FILE_ZIP;
    if (n >= 8 && !memcmp(head, hdf5, 8)) return KILN_FILE_HDF5;
    if (n >= 2 && head[0] == 0x1f && head[1] == 0x8b) return KILN_FILE_GZIP;
    if (n >= 9 && head[8] == '{') { /* a plausible header length first: JSON's bytes make a huge one */
        uint64_t len = 0;
        for (int b = 7; b >= 0; b--) len = len << 8 | head[b];
        if (len >= 2 && len <= KILN_ST_MAX_HEADER) return KILN_FILE_SAFETENSORS;
    }
    size_t i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r')) i++;
    if (i < n && head[i] == '{') return KILN_FILE_JSON;
    return KILN_FILE_UNKNOWN;
}

kiln_status kiln_file_kind_of(const char *path, kiln_file_kind *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_error(KILN_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    unsigned char head[64];
    size_t n = fread(head, 1, sizeof head, f);
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) return kiln_error(KILN_ERR_IO, "reading '%s' failed: %s", path, strerror(err));
    *out = kiln_file_kind_sniff(head, n);
    return KILN_OK;
}

const char *kiln_file_kind_name(kiln_file_kind k) {
    switch (k) {
    case KILN_FILE_EMPTY: return "an empty file";
    case KILN_FILE_ZIP: return "a zip archive (a Keras .keras file)";
    case KILN_FILE_HDF5: return "an HDF5 file (Keras .weights.h5 or .h5)";
    case KILN_FILE_SAFETENSORS: return "a safetensors file";
    case KILN_FILE_JSON: return "a JSON file";
    case KILN_FILE_GZIP: return "a gzip file";
    default: return "a file of unknown kind";
    }
}
