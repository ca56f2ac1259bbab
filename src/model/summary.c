/* summary.c: Keras' parameter counts and summary table (model.summary()), with Keras 2's
 * wrapping of long names and, for graph models, its "Connected to" column. */
#include <string.h>

#include "error.h"
#include "layer.h"

void kiln_model_param_counts(const kiln_model *m, int64_t *total, int64_t *trainable,
                             int64_t *non_trainable) {
    int64_t t = 0, tr = 0;
    if (!m) kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_param_counts: NULL model"); /* counts of 0 */
    for (int i = 0; m && i < m->n_nodes; i++) { /* the sums fit: kiln_model_build checked them */
        int64_t a, b;
        kiln_node_param_counts(&m->nodes[i], &a, &b);
        t += a;
        tr += b;
    }
    if (total) *total = t;
    if (trainable) *trainable = tr;
    if (non_trainable) *non_trainable = t - tr;
}

/* 462794 -> "462,794" */
static const char *thousands(int64_t v, char *buf, size_t n) {
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", (long long)v);
    size_t len = strlen(raw), o = 0;
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
    return buf;
}

/* one table row; a field longer than its column wraps onto continuation lines, as in Keras */
static void summary_row(FILE *out, const char *const *fields, const int *widths, int n) {
    size_t done[4] = {0};
    for (bool more = true; more;) {
        more = false;
        for (int i = 0; i < n; i++) {
            size_t len = strlen(fields[i]), take = (size_t)widths[i] - (i ? 1 : 2); /* keep a space */
            const char *f = done[i] < len ? fields[i] + done[i] : "";
            int w = (int)(strlen(f) < take ? strlen(f) : take);
            fprintf(out, "%s%.*s%*s", i ? "" : " ", w, f, widths[i] - w - (i ? 0 : 1), "");
            done[i] += (size_t)w;
            more |= done[i] < len;
        }
        fputc('\n', out);
    }
}

static const int summary_widths[4] = {29, 26, 10, 33};

/* node n's row: "name (Class)", "(None, ...)", its parameter count, and what feeds it */
static void layer_row(const kiln_model *m, const kiln_node *n, FILE *out) {
    char lt[96], shape[64], params[32];
    snprintf(lt, sizeof lt, "%s (%s)", n->cfg.name, n->desc->keras_class);
    int o = snprintf(shape, sizeof shape, "(None");
    for (int d = 0; d < n->out_ndim; d++)
        o += snprintf(shape + o, sizeof shape - (size_t)o, ", %lld", (long long)n->out_shape[d]);
    snprintf(shape + o, sizeof shape - (size_t)o, ")");
    int64_t tot, tr;
    kiln_node_param_counts(n, &tot, &tr);
    thousands(tot, params, sizeof params);
    char conn[160] = "";
    size_t c = 0;
    for (int k = 0; k < n->n_in && c < sizeof conn; k++)
        c += (size_t)snprintf(conn + c, sizeof conn - c, "%s%s[0][0]", k ? ", " : "", m->nodes[n->in[k]].cfg.name);
    const char *row[4] = {lt, shape, params, conn};
    summary_row(out, row, summary_widths, m->graph_form ? 4 : 3);
}

kiln_status kiln_model_summary(const kiln_model *m, FILE *out) {
    if (!m || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_summary: NULL argument");
    if (!m->shaped) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_model_summary: model '%s' is not built", m->name);
    int width = m->graph_form ? 98 : 65;
    char line[128];
    memset(line, '_', (size_t)width);
    line[width] = '\0';
    fprintf(out, "Model: \"%s\"\n%s\n", m->name, line);
    const char *head[4] = {"Layer (type)", "Output Shape", "Param #", "Connected to"};
    summary_row(out, head, summary_widths, m->graph_form ? 4 : 3);
    memset(line, '=', (size_t)width);
    fprintf(out, "%s\n", line);
    for (int i = 0; i < m->n_nodes; i++)
        if (i > 0 || m->graph_form) layer_row(m, &m->nodes[i], out); /* Keras' Sequential leaves the Input out */
    fprintf(out, "%s\n", line);
    int64_t tot, tr, nt;
    kiln_model_param_counts(m, &tot, &tr, &nt);
    char a[32], b[32], c[32];
    fprintf(out, "Total params: %s\nTrainable params: %s\nNon-trainable params: %s\n",
            thousands(tot, a, sizeof a), thousands(tr, b, sizeof b), thousands(nt, c, sizeof c));
    memset(line, '_', (size_t)width);
    fprintf(out, "%s\n", line);
    return KILN_OK;
}
