"""Verification of checkpoints: a checksum of the state and a digest of the meta, recorded
when a checkpoint is saved and compared when it is read back.

Orbax checks no checksum: a truncated file fails deep in TensorStore, and flipped bits restore
silently with changed values. So `seal` adds a checksum of the state (and a digest of the meta)
to the meta, and `problem` says why a restored checkpoint is not what was saved.

The checksum runs where the arrays are (one jitted reduction per leaf shape, also over sharded
arrays on many hosts; in NumPy, the same arithmetic, when they are in this process's CPU
memory): every element's bits, mixed with its position and leaf, summed modulo 2**32 in two
lanes. Integer sums are exact in any order, so it is the same for any sharding, and any single
changed element changes it (the mix is a bijection).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# The keys `seal` adds to a checkpoint's meta.
SEALS = ("checksum", "digest")


def _fmix(h):
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 that mixes every bit."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _bits(x: jax.Array) -> jax.Array:
    """The bits of every element as uint32 (8-byte elements as two)."""
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):  # (an LRU's carry): its two parts
        x = jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)
    size = x.dtype.itemsize
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[size]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _position(shape) -> jax.Array:
    """Each element's row-major index (mod 2**32), without materialising a reshape."""
    index, stride = jnp.zeros(shape, jnp.uint32), 1
    for axis in reversed(range(len(shape))):
        index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
        stride = stride * shape[axis] % 2**32
    return index


@jax.jit
def _leaf_lanes(leaf: jax.Array, i: jax.Array) -> jax.Array:
    """Leaf i's two terms. One small program per leaf shape, shared by every state that has
    such a leaf (one program for the whole tree compiled 2.4x slower, once per tree)."""
    bits = _bits(leaf)
    salt = _fmix(_position(bits.shape) * jnp.uint32(0x9E3779B9) + i + jnp.uint32(1))
    return jnp.stack([jnp.sum(_fmix(bits ^ salt ^ jnp.uint32(key)), dtype=jnp.uint32)
                      for key in (0, 0x5BD1E995)])


def _lanes(leaves: list[jax.Array]) -> jax.Array:
    total = jnp.zeros((2,), jnp.uint32)
    for i, leaf in enumerate(leaves):  # (sums mod 2**32: the order does not matter)
        total = total + _leaf_lanes(leaf, jnp.uint32(i))
    return total


@np.errstate(over="ignore")  # uint32 arithmetic wraps, as it does under jit
def _host_fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _host_lanes(leaves: list[np.ndarray]) -> np.ndarray:
    """`_lanes` in NumPy, the same uint32 arithmetic term for term: for arrays in host memory
    (a CPU run), where it costs no compiled program per leaf shape."""
    total = np.zeros(2, np.uint32)
    for i, leaf in enumerate(leaves):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = np.asarray(jax.random.key_data(leaf))
        leaf = np.asarray(leaf)
        if leaf.dtype == np.bool_:
            bits = leaf.astype(np.uint32)
        else:
            if np.issubdtype(leaf.dtype, np.complexfloating):
                leaf = np.stack([leaf.real, leaf.imag], axis=-1)
            size = leaf.dtype.itemsize
            unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint32}[size]
            bits = np.ascontiguousarray(leaf).view(unsigned).reshape(
                leaf.shape + ((2,) if size == 8 else ())).astype(np.uint32)
        position = (np.arange(bits.size, dtype=np.uint64) % 2**32).astype(np.uint32)
        with np.errstate(over="ignore"):
            salt = _host_fmix(position.reshape(bits.shape) * np.uint32(0x9E3779B9)
                              + np.uint32(i) + np.uint32(1))
        total += np.array([np.sum(_host_fmix(bits ^ salt ^ np.uint32(key)), dtype=np.uint32)
                           for key in (0, 0x5BD1E995)], np.uint32)
    return total


def _in_host_memory(x: Any) -> bool:
    """A NumPy array, or a jax.Array whose every shard is in this process's CPU memory."""
    return isinstance(x, np.ndarray) or (
        isinstance(x, jax.Array) and x.is_fully_addressable
        and all(d.platform == "cpu" for d in x.devices()))


def checksum(tree: Any) -> str:
    """A checksum of the values, shapes and dtypes of the arrays of `tree`."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    if all(_in_host_memory(x) for x in leaves):
        leaves = [x if isinstance(x, jax.Array) else  # as jnp.asarray would store it
                  np.asarray(x, jax.dtypes.canonicalize_dtype(np.asarray(x).dtype))
                  for x in leaves]
        values = _host_lanes(leaves)
    else:
        leaves = [jnp.asarray(x) for x in leaves]
        lanes = _lanes(leaves) if leaves else jnp.zeros(2, jnp.uint32)
        # Replicated, so every process holds the whole value.
        values = np.asarray(lanes.addressable_data(0))
    shapes = [(x.shape, str(x.dtype)) for x in leaves]
    structure = hashlib.sha1(repr((str(treedef), shapes)).encode()).hexdigest()[:8]
    return f"{structure}-{int(values[0]):08x}{int(values[1]):08x}"


def _digest(meta: dict) -> str:
    return hashlib.sha1(json.dumps({k: v for k, v in meta.items() if k != "digest"},
                                   sort_keys=True).encode()).hexdigest()


def seal(state: Any, meta: dict) -> dict:
    """`meta` with the checksum of `state` and a digest of both added, to save with them."""
    meta = {**meta, "checksum": checksum(state)}
    meta["digest"] = _digest(meta)
    return meta


def unseal(meta: dict) -> dict:
    """A restored meta without what `seal` added."""
    return {k: v for k, v in meta.items() if k not in SEALS}


def problem(state: Any, meta: Any) -> str | None:
    """Why a restored (state, meta) is not what was saved, or None if it is."""
    if not isinstance(meta, dict) or "checksum" not in meta:
        return "its metadata has no checksum (not written by this version of rnnlab?)"
    if meta.get("digest") != _digest(meta):
        return "its metadata does not match its digest (changed on disk)"
    if checksum(state) != meta["checksum"]:
        return "its values do not match the checksum recorded when it was saved"
    return None
