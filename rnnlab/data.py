"""Character corpora and their batching for truncated BPTT.

Corpora (`load_corpus(config.data)`, by `data.name`):
- "text8": Mahoney's cleaned English Wikipedia, 10^8 characters over space and a-z, downloaded
  once into the data directory (see `rnnlab.text8`). The standard split is 90M/5M/5M.
- "text": any UTF-8 file at `data.path` (tinyshakespeare, War and Peace, ...).
- "pydoc" (the offline default): the prose of Python's `help()` topics,
  `pydoc_data.topics.topics`, in sorted key order with a blank line between topics: about 0.5M
  characters of English technical prose on every machine with Python, no download. Its content
  depends on the Python version, so results are comparable only on the same Python minor version.
- "python_source": the "source code" experiment of Karpathy's char-rnn post: the top-level
  `*.py` files of Python's standard library, sorted by name and concatenated (also
  version-dependent).

Each corpus is split contiguously: train, then valid, then test. text8 has its fixed 27-symbol
vocabulary; the others take the sorted characters of the train split plus an unknown symbol,
and count (never drop) the characters of valid/test that fall outside it.

Batching follows char-rnn's loader: a split is laid out as B contiguous streams `[B, L]`, and
batch `index` is window `index % num_windows` of pass `index // num_windows`, a pure function
of (split, index), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import fractions
import math
import pathlib
import sys
import sysconfig
from typing import Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnnlab import text8

DataError = text8.DataError  # Raised for any corpus that is missing, corrupt or unreadable.

UNK = "\ufffd"  # The unknown symbol of vocabularies built from a train split.
TEXT8_ALPHABET = " abcdefghijklmnopqrstuvwxyz"
SPLITS = ("train", "valid", "test")


class Vocab(NamedTuple):
    """The symbols of a corpus: id i is `chars[i]`; `unk` is the id of the unknown symbol.

    `chars` are sorted, so a character's id depends only on the set of characters; an unknown
    symbol (`UNK`) is appended last unless the train text already contains it (`vocab_of`).
    """

    chars: tuple[str, ...]
    unk: int | None


class Corpus(NamedTuple):
    """A corpus split into integer ids.

    Attributes:
        splits: "train", "valid", "test" -> ids [N] (np.uint8 if the vocab fits, else np.int32).
        vocab: the symbols of the ids.
        unknown: split -> how many characters outside the vocab were mapped to `vocab.unk`.
        description: one line: what the corpus is, its size and its split sizes.
    """

    splits: dict[str, np.ndarray]
    vocab: Vocab
    unknown: dict[str, int]
    description: str


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def _lookup(vocab: Vocab, cps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids of code points and whether each is in the vocab (unknown ones get `vocab.unk` or 0)."""
    vocab_cps = _code_points("".join(vocab.chars))
    # A dense table indexed by code point: one gather, fast even for text8's 10^8 characters.
    size = max(int(cps.max(initial=0)), int(vocab_cps.max(initial=0))) + 1
    # int16 where it fits: text8's train split is 9 * 10^7 entries.
    dtype = np.int16 if len(vocab_cps) < 2**15 else np.int32
    table = np.full(size, -1, dtype)
    table[vocab_cps] = np.arange(len(vocab_cps), dtype=dtype)
    ids = table[cps]
    known = ids >= 0
    ids[~known] = 0 if vocab.unk is None else vocab.unk
    return ids.astype(np.uint8 if len(vocab.chars) <= 256 else np.int32), known


def encode(vocab: Vocab, text: str) -> np.ndarray:
    """Ids [N] of `text`; characters outside the vocab map to `vocab.unk`.

    Raises:
        ValueError: a character is outside a vocab with no unknown symbol.
    """
    ids, known = _lookup(vocab, _code_points(text))
    if vocab.unk is None and not known.all():
        i = int(np.argmin(known))
        raise ValueError(f"character {text[i]!r} at position {i} is not in the vocab")
    return ids


def to_text(vocab: Vocab, ids: np.ndarray | jax.Array) -> str:
    """The text of ids [N]."""
    table = _code_points("".join(vocab.chars))
    return table[np.asarray(ids, np.int64)].tobytes().decode("utf-32-le", "surrogatepass")


decode = to_text  # its old name (`rnnlab.decode` is the search over a model's outputs)


def vocab_of(chars: Iterable[str], *, unk_sorted_in: bool = False) -> Vocab:
    """The vocabulary of a training text's characters (in any order, repeats allowed): sorted,
    with the unknown symbol `UNK` appended last unless the text has it.

    `unk_sorted_in`: `UNK` sorted in among the characters instead (it then precedes any
    character above U+FFFD), as seq2seq's pairs vocabularies have always had it: their runs'
    token ids depend on it.
    """
    chars = sorted(set(chars) | ({UNK} if unk_sorted_in else set()))
    if UNK not in chars:
        chars.append(UNK)
    return Vocab(tuple(chars), chars.index(UNK))


def _exact_fractions(
    valid_fraction: float, test_fraction: float
) -> tuple[fractions.Fraction, fractions.Fraction]:
    exact = []
    for name, f in (("valid", valid_fraction), ("test", test_fraction)):
        if not isinstance(f, (int, float)) or not math.isfinite(f) or not 0 <= f < 1:
            raise ValueError(f"data.{name}_fraction must be a number in [0, 1), got {f}")
        exact.append(fractions.Fraction(str(f)))
    if sum(exact) >= 1:
        raise ValueError(
            f"data.valid_fraction + data.test_fraction must be < 1 to leave a train split, got "
            f"{valid_fraction} + {test_fraction}"
        )
    return exact[0], exact[1]


def check_fractions(valid_fraction: float, test_fraction: float) -> None:
    """Raises ValueError unless both are in [0, 1) and leave a train split."""
    _exact_fractions(valid_fraction, test_fraction)


def split_sizes(n: int, valid_fraction: float, test_fraction: float, *,
                unit: str = "characters") -> tuple[int, int, int]:
    """(train, valid, test) sizes of a corpus of `n` characters.

    valid and test get floor(n * fraction) characters, train the rest. The fractions are taken
    as the decimals they print as, in exact rational arithmetic, so 10^8 characters with
    0.05/0.05 split into exactly 90M/5M/5M (no float rounding error).

    Raises:
        ValueError: a fraction outside [0, 1), fractions summing to >= 1, or a split that ends up
            empty (a zero fraction asks for an empty split and is allowed).
    """
    exact = _exact_fractions(valid_fraction, test_fraction)
    n_valid, n_test = (int(n * f) for f in exact)
    sizes = {"train": n - n_valid - n_test, "valid": n_valid, "test": n_test}
    for name, f in zip(SPLITS, (1, *exact)):
        if sizes[name] == 0 and f != 0:
            raise ValueError(
                f"the {name} split of {'a corpus of ' if unit == 'characters' else ''}{n} "
                f"{unit} is empty: use a larger corpus (data.max_chars) or "
                + ("smaller fractions" if name == "train" else f"a larger data.{name}_fraction")
            )
    return sizes["train"], sizes["valid"], sizes["test"]


# ------------------------------------------------------------------------------------------------
# Corpora: each returns (code points [N], its fixed vocab or None, what it is).


def _text8(data: ml_collections.ConfigDict) -> tuple[np.ndarray, Vocab | None, str]:
    path = text8.fetch(data)
    cps = np.frombuffer(path.read_bytes(), np.uint8)
    allowed = np.zeros(256, bool)
    allowed[np.frombuffer(TEXT8_ALPHABET.encode(), np.uint8)] = True
    ok = allowed[cps]
    if not ok.all():
        i = int(np.argmin(ok))
        raise DataError(
            f"{path} is not text8: byte {bytes(cps[i : i + 1])!r} at offset {i} is not a-z or "
            f"space. Delete it (and text8.zip beside it if that is not the original) to download "
            f"it again."
        )
    return cps, Vocab(tuple(TEXT8_ALPHABET), None), f"text8 ({path}): cleaned English Wikipedia"


def _read_utf8(path: pathlib.Path | str) -> str:
    try:
        raw = pathlib.Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is not valid UTF-8: byte {raw[e.start : e.start + 1]!r} at byte offset "
            f"{e.start} ({e.reason})"
        ) from e


def _text(data: ml_collections.ConfigDict) -> tuple[np.ndarray, Vocab | None, str]:
    if not data.path:
        raise DataError("data.name='text' reads the UTF-8 file at data.path, which is empty")
    return _code_points(_read_utf8(data.path)), None, f"text file {data.path}"


def _python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def _pydoc(data: ml_collections.ConfigDict) -> tuple[np.ndarray, Vocab | None, str]:
    del data
    try:
        import pydoc_data.topics  # Some distributions package it apart from the stdlib.
    except ImportError as e:
        raise DataError(f"this Python has no pydoc_data ({e}): use another data.name") from e
    topics = pydoc_data.topics.topics
    text = "\n\n".join(topics[k].rstrip("\n") for k in sorted(topics)) + "\n"
    return _code_points(text), None, f"pydoc: the help() topics of Python {_python_version()}"


def _python_source(data: ml_collections.ConfigDict) -> tuple[np.ndarray, Vocab | None, str]:
    del data
    stdlib = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"), key=lambda p: p.name)
    if not files:
        raise DataError(f"no *.py files in Python's standard library directory {stdlib}")
    text = "".join(_read_utf8(p) for p in files)
    what = f"python_source: the {len(files)} *.py files of Python {_python_version()}'s stdlib"
    return _code_points(text), None, f"{what} ({stdlib})"


CORPORA: dict[str, Callable[[ml_collections.ConfigDict], tuple]] = {
    "text8": _text8,
    "text": _text,
    "pydoc": _pydoc,
    "python_source": _python_source,
}


def load_corpus(data: ml_collections.ConfigDict) -> Corpus:
    """Loads, truncates (`data.max_chars` > 0), splits and encodes the corpus `data.name`.

    Args:
        data: the config's `data` section (configs/base.py).

    Raises:
        ValueError: an unknown `data.name`, bad fractions, or an empty split.
        DataError: the corpus is missing, unreachable, corrupt or not UTF-8.
    """
    if data.name not in CORPORA:
        raise ValueError(f"unknown data.name {data.name!r}; known: {', '.join(CORPORA)}")
    _exact_fractions(data.valid_fraction, data.test_fraction)  # Fail before any download.
    cps, vocab, what = CORPORA[data.name](data)
    total = len(cps)
    if data.max_chars > 0:
        cps = cps[: data.max_chars]
    try:
        n_train, n_valid, _ = split_sizes(len(cps), data.valid_fraction, data.test_fraction)
    except ValueError as e:  # (the message names the corpus: an empty file, say)
        raise ValueError(f"{what}: {e}") from None
    parts = dict(zip(SPLITS, np.split(cps, [n_train, n_train + n_valid])))
    if vocab is None:
        vocab = vocab_of(chr(c) for c in np.unique(parts["train"]))
    splits, unknown = {}, {}
    for name, part in parts.items():
        splits[name], known = _lookup(vocab, part)
        unknown[name] = int(len(known) - np.count_nonzero(known))
    size = f"{len(cps):,} chars" + (f" (the first of {total:,})" if len(cps) < total else "")
    description = (
        f"{what}; {size}, {len(vocab.chars)} symbols; "
        + " / ".join(f"{name} {len(splits[name]):,}" for name in SPLITS)
    )
    return Corpus(splits, vocab, unknown, description)


# ------------------------------------------------------------------------------------------------
# Batching for truncated BPTT.


def make_streams(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """Lays a split out as B contiguous streams [B, L], L = len(ids) // B; the rest is dropped.

    Stream b is `ids[b*L:(b+1)*L]`, so consecutive windows of a stream continue one another and
    the carry can be handed on between them. The dtype of `ids` is kept (uint8 saves memory);
    `get_batch` casts windows to int32.

    Raises:
        ValueError: L < 2 (a stream needs an input and its next-character target).
    """
    n = len(ids)
    length = n // batch_size if batch_size > 0 else 0
    if length < 2:
        raise ValueError(f"split of {n} chars is too short for batch_size {batch_size}")
    return np.asarray(ids)[: batch_size * length].reshape(batch_size, length)


def whole_streams(ids: np.ndarray, num_streams: int, bptt_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (input, next character) pair of a split, as S contiguous streams for a final
    evaluation that scores all of it: `(inputs, targets)`, int32 `[S, n * T]`.

    The N - 1 pairs are cut into S = min(num_streams, N - 1) consecutive chunks of
    ceil((N - 1) / S) (the last one shorter), each padded to whole windows of T; padding has
    target -1 (not scored). Stream s starts cold at pair s * ceil((N - 1) / S).
    """
    pairs = len(ids) - 1
    if pairs < 1:
        raise ValueError(f"a split of {len(ids)} chars has no character to predict")
    S = max(1, min(num_streams, pairs))
    chunk = -(-pairs // S)
    length = -(-chunk // bptt_len) * bptt_len
    inputs = np.zeros((S, length), np.int32)
    targets = np.full((S, length), -1, np.int32)
    ids = np.asarray(ids)
    for s in range(S):
        n = min(chunk, pairs - s * chunk)
        if n > 0:
            inputs[s, :n] = ids[s * chunk: s * chunk + n]
            targets[s, :n] = ids[s * chunk + 1: s * chunk + n + 1]
    return inputs, targets


def num_windows(stream_length: int, bptt_len: int) -> int:
    """Windows of T = `bptt_len` steps in one pass over streams of length L: (L - 1) // T.

    The last target of a window is the next window's first input, so L - 1 positions are scored.

    Raises:
        ValueError: bptt_len < 1, or longer than L - 1 (no window fits).
    """
    if bptt_len < 1 or (stream_length - 1) // bptt_len == 0:
        raise ValueError(
            f"bptt_len {bptt_len} is longer than the split allows: streams of {stream_length} "
            f"chars fit windows of at most bptt_len {stream_length - 1} (use a smaller "
            "train.bptt_len or batch size, or a larger split)"
        )
    return (stream_length - 1) // bptt_len


def get_batch(
    streams: jax.Array, index: int | jax.Array, bptt_len: int, *, num_windows: int
) -> dict[str, jax.Array]:
    """Batch `index`: window w = index % num_windows of pass index // num_windows.

    Pure and jit-able with a traced `index` (pass `streams` as a jit argument, not a closure
    constant, so a large split is not baked into the program).

    Args:
        streams: [B, L] from `make_streams`.
        index: the batch number (e.g. the train step); may be traced.
        bptt_len: T, the window length.
        num_windows: `num_windows(L, T)` (static).

    Returns:
        "inputs": streams[:, wT : wT+T] and "targets": streams[:, wT+1 : wT+T+1], int32 [B, T];
        "reset": bool [B, T], true in column 0 when w == 0 only: the carry restarts at the start
        of each pass over the data.
    """
    batch_size, length = streams.shape
    if num_windows < 1 or num_windows * bptt_len + 1 > length:
        # dynamic_slice would clamp an out-of-range start and silently repeat data.
        raise ValueError(
            f"num_windows {num_windows} of bptt_len {bptt_len} need streams longer than "
            f"{num_windows * bptt_len}, got {length}: use num_windows(L, T)"
        )
    w = jnp.asarray(index) % num_windows
    window = jax.lax.dynamic_slice(streams, (0, w * bptt_len), (batch_size, bptt_len + 1))
    window = window.astype(jnp.int32)
    reset = jnp.zeros((batch_size, bptt_len), bool).at[:, 0].set(w == 0)
    return {"inputs": window[:, :-1], "targets": window[:, 1:], "reset": reset}
