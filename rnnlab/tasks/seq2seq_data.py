"""The examples of the seq2seq and vec2seq tasks (`rnnlab.tasks.seq2seq`): addition problems
and numbers generated from a key, and pairs of texts read from a tab-separated file.

Token ids 0, 1, 2 are PAD, EOS and BOS in every vocabulary of these tasks.
"""

from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from rnnlab import data as data_lib
from rnnlab.tasks import base

PAD, EOS, BOS = 0, 1, 2
ADDITION_SYMBOLS = " +0123456789="  # ids 2.. (Flax's vocabulary: sorted, after PAD and EOS)
DIGITS = "0123456789"
EVAL_KEY = 20161121  # fixed: every seed is evaluated on the same examples


def addition_id(symbol: str) -> int:
    return 2 + sorted(ADDITION_SYMBOLS).index(symbol)


def _digits_of(n, count):
    """The decimal digits of n [N] (most significant first) and how many there are."""
    digits = (n[:, None] // 10 ** jnp.arange(count - 1, -1, -1)) % 10  # right-aligned
    return digits, 1 + jnp.sum(n[:, None] >= 10 ** jnp.arange(1, count), axis=1)


def _place(parts, width):
    """Concatenates per-row variable-length parts: [(tokens [N, w], lengths [N])] -> [N, width]
    (PAD after the last part)."""
    N = parts[0][0].shape[0]
    out = jnp.full((N, width), PAD, jnp.int32)
    offset = jnp.zeros((N,), jnp.int32)
    positions = jnp.arange(width)
    for tokens, lengths in parts:
        w = tokens.shape[1]
        for i in range(w):  # part token i goes to offset + i, when i < its length
            out = jnp.where((positions[None] == (offset + i)[:, None]) & (i < lengths)[:, None],
                            tokens[:, i:i + 1], out)
        offset = offset + lengths
    return out


def addition_examples(key, n: int, max_digits: int) -> dict[str, jax.Array]:
    """n problems "a+b" -> "=" + str(a + b) (Flax's examples/seq2seq input pipeline)."""
    ka, kb = jax.random.split(key)
    a, b = jax.random.randint(ka, (n,), 0, 100), jax.random.randint(kb, (n,), 0, 10 ** max_digits)
    a, b = jnp.minimum(a, b), jnp.maximum(a, b)
    width = max(max_digits, 2)
    digit = lambda d: d + addition_id("0")  # noqa: E731
    (da, la), (db, lb) = _digits_of(a, width), _digits_of(b, width)
    one = jnp.ones((n,), jnp.int32)
    eos = (jnp.full((n, 1), EOS), one)
    source = _place([(digit(_left(da, la, width)), la),
                     (jnp.full((n, 1), addition_id("+")), one),
                     (digit(_left(db, lb, width)), lb), eos], 2 * width + 2)
    total, lt = _digits_of(a + b, width + 1)
    target = _place([(jnp.full((n, 1), addition_id("=")), one),
                     (digit(_left(total, lt, width + 1)), lt), eos], width + 3)
    return {"source": source, "source_lengths": la + lb + 1,  # the encoder stops before EOS
            "target": target}


def _left(digits, lengths, width):
    """Right-aligned digits [N, width] moved to the left (the number's own digits first)."""
    index = (width - lengths[:, None] + jnp.arange(width)[None]).clip(0, width - 1)
    return jnp.take_along_axis(digits, index, 1)


def number_examples(key, n: int, max_digits: int) -> dict[str, jax.Array]:
    """vec2seq: n numbers < 10^D as +-1 binary vectors -> BOS, their decimal digits, EOS."""
    number = jax.random.randint(key, (n,), 0, 10 ** max_digits)
    bits = math.ceil(max_digits * math.log2(10))
    vector = ((number[:, None] >> jnp.arange(bits)) & 1) * 2.0 - 1.0
    digits, lengths = _digits_of(number, max_digits)
    one = jnp.ones((n,), jnp.int32)
    target = _place([(jnp.full((n, 1), BOS), one), (_left(digits, lengths, max_digits) + 3,
                                                    lengths), (jnp.full((n, 1), EOS), one)],
                    max_digits + 2)
    return {"source": vector, "source_lengths": jnp.full((n,), bits), "target": target}


def read_pairs(path: str) -> list[tuple[str, str, int]]:
    """(source, target, line number) of a tab-separated parallel text file."""
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise data_lib.DataError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from e
    pairs = []
    # Lines end at "\n" alone: other line breaks (U+2028, "\x85", "\x0c", ...) are text.
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if "\t" not in line:
            raise data_lib.DataError(f"{path}, line {number}: no tab between source and target "
                                     f"({line[:60]!r})")
        source, target = line.split("\t", 1)
        pairs.append((source, target, number))
    return pairs


def generated(config) -> bool:
    """Whether the examples are generated (addition, vec2seq): fresh train batches."""
    return config.task.name == "vec2seq" or config.data.name == "addition"


def generator(config):
    return number_examples if config.task.name == "vec2seq" else addition_examples


def generated_examples(config):
    """The fixed valid and test examples of a generated task, and its record."""
    # Jitted: eagerly, each of the generator's small integer ops compiled on its own (about
    # 140 programs); integer arithmetic, so the same examples either way.
    generate = jax.jit(generator(config), static_argnums=(1, 2))
    examples = {split: jax.device_get(generate(jax.random.fold_in(jax.random.key(EVAL_KEY), i),
                                               config.data.eval_examples,
                                               config.data.max_digits))
                for i, split in enumerate(("valid", "test"))}
    return examples, tokens_record(config)


def tokens_record(config) -> dict:
    """A generated task's tokens (and vec2seq's vector size), for its record."""
    if config.task.name == "vec2seq":
        bits = math.ceil(config.data.max_digits * math.log2(10))
        return {"tokens": ["<pad>", "<eos>", "<bos>", *DIGITS], "vector_size": bits}
    return {"tokens": ["<pad>", "<eos>", *sorted(ADDITION_SYMBOLS)]}


def pairs_examples(config):
    """Every split of a pairs file as padded ids, and the record (its tokens)."""
    d = config.data
    splits = base.split_examples(read_pairs(d.path), d, "pairs")
    # The unknown symbol sorted in among the characters, as these runs have always had it
    # (their token ids, and so their checkpoints, depend on it).
    vocab = data_lib.vocab_of((c for s, t, _ in splits["train"] for c in s + t),
                              unk_sorted_in=True)
    tokens = ["<pad>", "<eos>", "<bos>", *vocab.chars]
    ids = {c: i for i, c in enumerate(tokens)}
    unk = ids[data_lib.UNK]
    cap = d.max_length or None
    S = max(len(s[:cap]) for split in splits.values() for s, _, _ in split) + 1
    T = max(len(t[:cap]) for split in splits.values() for _, t, _ in split) + 2
    arrays = {}
    for split, rows in splits.items():
        if not rows:
            raise ValueError(f"the {split} split of {d.path} is empty: use more lines or a "
                             f"larger data.{split}_fraction")
        source = np.zeros((len(rows), S), np.int32)
        target = np.zeros((len(rows), T), np.int32)
        lengths = np.zeros(len(rows), np.int32)
        for r, (s, t, _) in enumerate(rows):
            s, t = s[:cap], t[:cap]
            source[r, :len(s) + 1] = [ids.get(c, unk) for c in s] + [EOS]
            target[r, :len(t) + 2] = [BOS] + [ids.get(c, unk) for c in t] + [EOS]
            lengths[r] = max(len(s), 1)
        arrays[split] = {"source": source, "source_lengths": lengths, "target": target}
        cut = sum(len(s) > len(s[:cap]) or len(t) > len(t[:cap]) for s, t, _ in rows)
        if cut:  # (scored against the cut targets)
            logging.warning("%s split: %d pairs cut to data.max_length=%d characters", split,
                            cut, cap)
    if len(arrays["train"]["target"]) < config.train.batch_size:
        raise ValueError(f"{d.path}: the training split has {len(arrays['train']['target'])} "
                         f"pairs, fewer than train.batch_size={config.train.batch_size}")
    return arrays, {"tokens": tokens}
