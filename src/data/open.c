/* data/open.c: kiln_dataset_open, which turns a dataset spec ("synthetic", "mnist:DIR",
 * "cifar10:DIR", "npy:X.npy,Y.npy[,XT.npy,YT.npy]") into the right loader's call. */
#include <stdio.h>
#include <string.h>

#include "data_internal.h"
#include "error.h"

static kiln_status open_npy(const char *list, const kiln_data_options *opt, kiln_dataset **train,
                            kiln_dataset **test) {
    char buf[4096];
    if (strlen(list) >= sizeof buf)
        return kiln_error(KILN_ERR_INVALID_ARG, "npy: the file list is too long");
    snprintf(buf, sizeof buf, "%s", list);
    char *part[5] = {0};
    int n = 0;
    for (char *p = buf; n < 5; n++) {
        part[n] = p;
        char *comma = strchr(p, ',');
        if (!comma) {
            n++;
            break;
        }
        *comma = '\0';
        p = comma + 1;
    }
    if (n != 2 && n != 4)
        return kiln_error(KILN_ERR_INVALID_ARG,
                          "npy:%s: expected npy:X.npy,Y.npy or npy:X.npy,Y.npy,XTEST.npy,YTEST.npy", list);
    int k = opt ? opt->num_classes : 0;
    KILN_TRY(kiln_dataset_load_npy(part[0], part[1], k, train));
    if (n == 2 || !test) return KILN_OK;
    kiln_status s = kiln_dataset_load_npy(part[2], part[3], k, test);
    if (s != KILN_OK) {
        kiln_dataset_free(*train);
        *train = NULL;
        return s;
    }
    int kmax = (*train)->num_classes > (*test)->num_classes ? (*train)->num_classes : (*test)->num_classes;
    (*train)->num_classes = (*test)->num_classes = kmax;
    return KILN_OK;
}

kiln_status kiln_dataset_open(const char *spec, const kiln_data_options *opt, kiln_dataset **train,
                              kiln_dataset **test) {
    if (!spec || !train) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_dataset_open: NULL argument");
    *train = NULL;
    if (test) *test = NULL;
    if (!strcmp(spec, "synthetic")) return kiln_dataset_synthetic(opt, train, test);
    if (!strncmp(spec, "mnist:", 6) && spec[6]) return kiln_dataset_load_mnist(spec + 6, train, test);
    if (!strncmp(spec, "cifar10:", 8) && spec[8]) return kiln_dataset_load_cifar10(spec + 8, train, test);
    if (!strncmp(spec, "npy:", 4) && spec[4]) return open_npy(spec + 4, opt, train, test);
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "unknown dataset '%s' (synthetic, mnist:DIR, cifar10:DIR, npy:X.npy,Y.npy)", spec);
}
