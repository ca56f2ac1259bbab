/* kiln/data.h: datasets held in host memory, the loaders that fill them, and the batch helpers
 * fit uses (index shuffling, batch gathering with augmentation, a background prefetcher).
 *
 * A dataset is N images, NHWC float32 (uint8 pixels scaled by 1/255), with N int32 labels in
 * [0, num_classes). Every loader validates its files and returns KILN_ERR_IO (missing,
 * unreadable) or KILN_ERR_FORMAT (malformed) with a message naming the file, the byte offset
 * and what is wrong; it never crashes or exits on a bad file. docs/formats.md has the rules.
 *
 * Dataset specs (kiln_dataset_open):
 *   "synthetic"                 generated shapes, 10 classes (kiln_dataset_synthetic)
 *   "mnist:DIR"                 IDX files train-images-idx3-ubyte ... (raw or .gz)
 *   "cifar10:DIR"               data_batch_1..5.bin and test_batch.bin (binary version)
 *   "npy:X.npy,Y.npy"           a training set from NumPy files (no test set)
 *   "npy:X.npy,Y.npy,XT.npy,YT.npy"  the same with a test set
 * Random choices use splitmix64 streams derived from the given seed: results repeat exactly
 * on every platform. */
#ifndef KILN_DATA_H
#define KILN_DATA_H

#include "kiln/api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most classes a dataset may have. */
#define KILN_MAX_CLASSES 65536

typedef struct kiln_dataset {
    int64_t n;            /* number of examples (> 0 once loaded) */
    int h, w, c;          /* image height, width, channels */
    int num_classes;      /* labels lie in [0, num_classes) */
    float *images;        /* n * h * w * c floats, NHWC, example-major */
    int32_t *labels;      /* n labels */
    char source[256];     /* where it came from ("mnist:/data/mnist train"), for messages */
} kiln_dataset;

/* An empty dataset of n examples (images zeroed, labels 0). `source` may be NULL. */
KILN_API kiln_status kiln_dataset_new(int64_t n, int h, int w, int c, int num_classes, const char *source,
                             kiln_dataset **out);
/* Frees the dataset and its arrays. NULL is allowed. */
KILN_API void kiln_dataset_free(kiln_dataset *ds);
/* Floats per image: h * w * c (0 for a NULL dataset). */
KILN_API size_t kiln_dataset_image_numel(const kiln_dataset *ds);

/* KILN_ERR_FORMAT when the dataset is empty or a label is outside [0, num_classes) (naming
 * the index and the value). Every loader calls it. */
KILN_API kiln_status kiln_dataset_check(const kiln_dataset *ds);

/* Options of the generated dataset and of kiln_dataset_open. Zero means the default. */
typedef struct kiln_data_options {
    int64_t n_train;      /* synthetic: training examples (default 5000) */
    int64_t n_test;       /* synthetic: test examples (default 1000) */
    int image_size;       /* synthetic: height = width, 8 .. 256 (default 32) */
    uint64_t seed;        /* synthetic: the generator's seed (0 is a seed like any other) */
    int num_classes;      /* synthetic: 2 .. 10 (default 10); npy: 0 = largest label + 1 */
} kiln_data_options;

/* Opens a dataset by spec (see the top of this file). `test` may be NULL when not wanted;
 * *test is NULL for an npy spec without test files. opt may be NULL (defaults). */
KILN_API kiln_status kiln_dataset_open(const char *spec, const kiln_data_options *opt, kiln_dataset **train,
                              kiln_dataset **test);

/* The generated dataset: image_size^2 x 3 images of drawn shapes (circle, square, triangle,
 * plus, horizontal stripes, vertical stripes, ring, diagonal bar, dot grid, X), one shape per
 * class, with a colour that leans towards the class's colour, random position and size, a
 * random background and Gaussian pixel noise. Train and test come from separate streams of
 * the same seed; the same seed gives the same bytes. `test` may be NULL. */
KILN_API kiln_status kiln_dataset_synthetic(const kiln_data_options *opt, kiln_dataset **train,
                                   kiln_dataset **test);
/* MNIST-style IDX files in dir: {train,t10k}-{images-idx3,labels-idx1}-ubyte, each raw or
 * with .gz appended. Images become (N, rows, cols, 1); 10 classes. `test` may be NULL. */
KILN_API kiln_status kiln_dataset_load_mnist(const char *dir, kiln_dataset **train, kiln_dataset **test);
/* CIFAR-10 binary batches in dir (or dir/cifar-10-batches-bin): data_batch_1..5.bin and
 * test_batch.bin; images become (N, 32, 32, 3). `test` may be NULL. */
KILN_API kiln_status kiln_dataset_load_cifar10(const char *dir, kiln_dataset **train, kiln_dataset **test);
/* Images from x_path ((N, H, W, C) or (N, H, W); |u1 scaled by 1/255, <f4 or <f8 as they are,
 * which must be finite) and labels from y_path ((N) or (N, 1); |u1, <i4 or <i8).
 * num_classes 0 means the largest label + 1. */
KILN_API kiln_status kiln_dataset_load_npy(const char *x_path, const char *y_path, int num_classes,
                                  kiln_dataset **out);

/* Keras' validation_split: the first floor(n * (1 - fraction)) examples stay in ds (which
 * shrinks) and the LAST ones move to a new dataset *val; call it before any shuffling.
 * fraction in (0, 1); both parts must be non-empty. */
KILN_API kiln_status kiln_dataset_split(kiln_dataset *ds, double fraction, kiln_dataset **val);

/* Per-channel mean and population standard deviation over all pixels of ds (arrays of c). */
KILN_API kiln_status kiln_dataset_channel_stats(const kiln_dataset *ds, float *mean, float *std);
/* x = (x - mean[ch]) / std[ch] for every pixel; a std below 1e-6 is taken as 1. */
KILN_API kiln_status kiln_dataset_normalize(kiln_dataset *ds, const float *mean, const float *std);
/* Stats of train, applied to train and to test (test may be NULL); mean_out and std_out (c
 * floats each) receive the stats when not NULL. */
KILN_API kiln_status kiln_dataset_standardize(kiln_dataset *train, kiln_dataset *test, float *mean_out,
                                     float *std_out);

/* idx[0..n) = a permutation of 0..n-1 drawn from seed (Fisher-Yates over splitmix64). This is
 * the order kiln_model_fit trains in: with kiln_fit_config.shuffle, its epoch e (0-based)
 * visits the training rows in the order kiln_dataset_shuffle_indices(idx, n, seed * 1000003 + e)
 * (seed: kiln_fit_config.seed, uint64_t arithmetic; n: the training rows, after any
 * validation_split), the order a batch source's start() receives. */
KILN_API kiln_status kiln_dataset_shuffle_indices(int64_t *idx, int64_t n, uint64_t seed);

/* Training-time augmentation (CIFAR style). pad > 0: zero-pad the image by `pad` pixels on
 * each side and crop a random h x w window; flip: mirror left-right with probability 1/2. */
typedef struct kiln_augment {
    int pad;
    bool flip;
} kiln_augment;

/* Copies examples idx[0..count) into images (count * h * w * c floats) and labels (count).
 * aug may be NULL (plain copy); with aug, example j of the batch draws its crop and flip from
 * splitmix64(seed, j), so a batch depends only on (idx, aug, seed). Indices are checked. */
KILN_API kiln_status kiln_dataset_gather(const kiln_dataset *ds, const int64_t *idx, int64_t count,
                                const kiln_augment *aug, uint64_t seed, float *images,
                                int32_t *labels);

/* ---- the batch prefetcher ----------------------------------------------------------------
 * Cuts an epoch's index order into batches of batch_size (the last may be smaller) and fills
 * them with kiln_dataset_gather. Threaded, a producer thread fills the next batch into one of
 * two host buffers while the caller uses the other; unthreaded, next() fills the batch itself.
 * Both give the same batches in the same order, bit for bit: batch k uses the seed
 * splitmix64(seed, k). With a backend, the buffers are kiln_host_alloc memory (pinned for
 * CUDA) so uploads from them can be asynchronous. A batch's buffers stay valid and untouched
 * until the next call to next(), stop() or free(); an asynchronous upload from them must be
 * finished (kiln_backend_synchronize) before then. */
typedef struct kiln_prefetcher kiln_prefetcher;

typedef struct kiln_batch {
    const float *images;  /* count * h * w * c floats */
    const int32_t *labels;/* count labels */
    int64_t count;        /* examples in this batch; 0 when the epoch is over */
    int64_t index;        /* batch number within the epoch */
} kiln_batch;

/* ds must outlive the prefetcher. be may be NULL (malloc'ed buffers); aug may be NULL. */
KILN_API kiln_status kiln_prefetcher_new(const kiln_dataset *ds, int64_t batch_size, const kiln_augment *aug,
                                kiln_backend *be, bool threaded, kiln_prefetcher **out);
/* Begins an epoch over order[0..n) (copied; each index checked). Stops any epoch under way. */
KILN_API kiln_status kiln_prefetcher_start(kiln_prefetcher *p, const int64_t *order, int64_t n, uint64_t seed);
/* The next batch of the epoch; out->count is 0 after the last one. */
KILN_API kiln_status kiln_prefetcher_next(kiln_prefetcher *p, kiln_batch *out);
/* Ends the epoch early (waits for the producer thread). */
KILN_API void kiln_prefetcher_stop(kiln_prefetcher *p);
KILN_API void kiln_prefetcher_free(kiln_prefetcher *p);

/* ---- parsers over memory buffers (the file loaders use them; so do the fuzz targets) ---- */

#define KILN_IDX_MAX_DIMS 4
/* An IDX file of unsigned bytes: dims and a pointer into the parsed buffer. */
typedef struct kiln_idx {
    int ndim;
    int64_t dims[KILN_IDX_MAX_DIMS];
    const uint8_t *data;
    size_t nbytes;
} kiln_idx;
/* Checks the magic number 0x0000 08 <ndim> (unsigned byte data with `ndim` dimensions, 1 ..
 * KILN_IDX_MAX_DIMS), the big-endian dims and that the length is exactly the header plus the
 * product of the dims. `name` names the buffer in messages. */
KILN_API kiln_status kiln_idx_parse(const void *buf, size_t len, const char *name, int ndim, kiln_idx *out);

#define KILN_NPY_MAX_DIMS 8
typedef enum kiln_npy_dtype {
    KILN_NPY_U8 = 0, /* '|u1' */
    KILN_NPY_I32,    /* '<i4' */
    KILN_NPY_I64,    /* '<i8' */
    KILN_NPY_F32,    /* '<f4' */
    KILN_NPY_F64,    /* '<f8' */
    KILN_NPY_DTYPE_COUNT
} kiln_npy_dtype;
/* A parsed .npy array: its dtype, shape and a pointer into the buffer (maybe unaligned). */
typedef struct kiln_npy {
    kiln_npy_dtype dtype;
    int ndim;
    int64_t shape[KILN_NPY_MAX_DIMS];
    const void *data;
    size_t nbytes;        /* product(shape) * itemsize, equal to what follows the header */
    int version;          /* 1, 2 or 3 */
} kiln_npy;
/* Parses a .npy v1/v2/v3 header (magic, version, header length, the dict with 'descr',
 * 'fortran_order' (must be False) and 'shape') and checks the data length. */
KILN_API kiln_status kiln_npy_parse(const void *buf, size_t len, const char *name, kiln_npy *out);

#ifdef __cplusplus
}
#endif
#endif
