/* usage.c: the usage text of `kiln --help` and `kiln <command> --help`. docs/cli.md's
 * "Usage" block is the same text; tests/test_cli.c checks that the two agree. */
#include "cli.h"

const char kiln_cli_usage[] =
    "usage: kiln <command> [options]\n"
    "\n"
    "  kiln train    --model M [--data D] [--epochs N] [--batch-size N] [--optimizer adam|sgd|adamw]\n"
    "                [--lr X] [--validation-split F | --validation-data D2] [--device auto|cpu|cuda[:N]]\n"
    "                [--seed N] [--no-shuffle] [--init-weights FILE] [--resume FILE]\n"
    "                [--freeze all-but-batchnorm|LAYER,...] [--log-steps FILE.csv] [--out DIR]\n"
    "                [--verbose 0|1|2] [--standardize] [--augment]\n"
    "  kiln evaluate --weights FILE [--data D] [--device ...] [--batch-size N] [--standardize]\n"
    "                (loss and accuracy, inference mode)\n"
    "  kiln predict  --weights FILE [--data D] [--out FILE.csv] [--device ...] [--batch-size N]\n"
    "                [--standardize]   (class probabilities per row)\n"
    "  kiln summary  --model M [--data D]   (Keras' summary table)\n"
    "\n"
    "  M  seed-cnn | resnet20 (built in; their input and classes follow the data)\n"
    "     | FILE.json (Keras model.to_json(), Keras 2 or 3) | FILE.safetensors (kiln's saved model)\n"
    "  D  synthetic (the default) | mnist:DIR | cifar10:DIR | npy:X.npy,Y.npy[,XTEST.npy,YTEST.npy]\n"
    "     synthetic takes [--train-size N] [--test-size N] [--image-size N] [--classes N]\n"
    "     [--data-seed N]; npy takes [--classes N]\n"
    "  evaluate, predict and --validation-data use D's test split when it has one, else its\n"
    "  training split; --standardize always uses the training split's statistics.\n"
    "\n"
    "  Exit status 0 on success, 1 on an error, 2 on a bad command line; every error is one\n"
    "  line on stderr: \"kiln: <message>\". docs/cli.md has the details.\n";
