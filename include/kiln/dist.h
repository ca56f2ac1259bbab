/* kiln/dist.h: data-parallel training across processes (docs/distributed.md). A kiln_comm is
 * a communicator of `size` ranks; this process is rank `rank`. kiln_dist_init opens the MPI
 * engine when the process was started by mpirun (Open MPI's or PMI's environment says so) and
 * a "single" engine (one rank, every collective a no-op) otherwise. Collectives are blocking
 * for the caller, in a fixed order (results never depend on timing), and time out
 * (KILN_DIST_TIMEOUT seconds, default 300) with KILN_ERR_IO instead of hanging. */
#ifndef KILN_DIST_H
#define KILN_DIST_H

#include "kiln/api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_comm kiln_comm;

/* Opt-in: the communicator of this launch (MPI under mpirun, else single). MPI is initialized
 * here and finalized by kiln_comm_free. A launch of N > 1 ranks with a kiln built without MPI
 * fails with a message saying so. */
KILN_API kiln_status kiln_dist_init(kiln_comm **out);
/* A one-rank communicator (what a plain process uses). */
KILN_API kiln_status kiln_comm_single(kiln_comm **out);
KILN_API void kiln_comm_free(kiln_comm *c);
/* rank 0 and size 1 for NULL */
KILN_API int kiln_comm_rank(const kiln_comm *c);
KILN_API int kiln_comm_size(const kiln_comm *c);
/* "single", "mpi" ("?" for NULL) */
KILN_API const char *kiln_comm_engine(const kiln_comm *c);
/* seconds spent inside collectives since the communicator was opened */
KILN_API double kiln_comm_seconds(const kiln_comm *c);

/* buf[0..n) on every rank becomes the sum over ranks, added in rank order (0, 1, ..., N-1) in
 * double on rank 0 and broadcast: the same bits on every rank, whatever the timing. */
KILN_API kiln_status kiln_comm_allreduce_sum(kiln_comm *c, double *buf, int64_t n);
/* nbytes of root's buf into every rank's buf */
KILN_API kiln_status kiln_comm_broadcast(kiln_comm *c, void *buf, size_t nbytes, int root);
KILN_API kiln_status kiln_comm_barrier(kiln_comm *c);
/* Data-parallel training of m over c (NULL: a plain process), after kiln_model_build: fit then
 * trains rank r on its share of each global batch, all-reduces the gradients and the metrics,
 * and synchronized BatchNormalization layers use the global batch's statistics. c must
 * outlive m's training. */
typedef struct kiln_model kiln_model;
KILN_API kiln_status kiln_model_set_comm(kiln_model *m, kiln_comm *c);
/* Sets `synchronized` on every BatchNormalization layer of m (the CLI's --sync-bn). */
KILN_API kiln_status kiln_model_sync_batchnorm(kiln_model *m, bool on);

/* Ends the whole job: prints "kiln: rank R of N failed: MSG" on stderr and, with more than one
 * rank, aborts every rank (MPI_Abort); with one rank it only prints and returns. */
KILN_API void kiln_comm_abort(kiln_comm *c, const char *msg);
/* kiln_comm_abort with the job's exit status `code` (> 0; MPI_Abort's errorcode, which mpirun
 * exits with): the CLI's 2 for a usage error. */
KILN_API void kiln_comm_abort_code(kiln_comm *c, const char *msg, int code);

#ifdef __cplusplus
}
#endif
#endif
