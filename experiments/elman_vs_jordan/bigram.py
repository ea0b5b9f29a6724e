"""The bits per character of character n-gram models on the experiment's splits, the
reference for a teacher-forced Jordan network (which, fed the previous target, sees only the
current character: a first-order Markov chain over the alphabet, i.e. a bigram model).

    python -m experiments.elman_vs_jordan.bigram \
        [--config=experiments/elman_vs_jordan/config.py:FILE]

Counts from the train split with add-k smoothing (k chosen on the valid split from a small
grid, as an n-gram modeller would); prints valid and test bpc for n = 1 (unigram) and 2.
"""

import numpy as np
from absl import app
from ml_collections import config_flags

from rnnlab import data

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/elman_vs_jordan/config.py")


def ngram_bpc(train, split, V, n, k):
    """Bits per character of `split` (ids) under add-k n-gram counts of `train`, n in {1, 2}."""
    if n == 1:
        counts = np.bincount(train, minlength=V) + k
        p = counts / counts.sum()
        return float(-np.mean(np.log2(p[split])))
    counts = np.zeros((V, V)) + k
    np.add.at(counts, (train[:-1], train[1:]), 1)
    p = counts / counts.sum(1, keepdims=True)
    return float(-np.mean(np.log2(p[split[:-1], split[1:]])))


def main(argv):
    del argv
    corpus = data.load_corpus(_CONFIG.value.data)
    s = {k: v.astype(np.int64) for k, v in corpus.splits.items()}
    V = len(corpus.vocab.chars)
    print(f"{corpus.description}; {V} symbols")
    for n in (1, 2):
        k = min((0.01, 0.1, 0.5, 1.0), key=lambda k: ngram_bpc(s["train"], s["valid"], V, n, k))
        print(f"{n}-gram (add-{k}): valid {ngram_bpc(s['train'], s['valid'], V, n, k):.4f} bpc, "
              f"test {ngram_bpc(s['train'], s['test'], V, n, k):.4f} bpc")


if __name__ == "__main__":
    app.run(main)
