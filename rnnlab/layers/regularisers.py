"""The regularisers of recurrent layers, each a pure function of its masks or keys.

- dropout between stacked layers (`dropout`);
- weight drop, DropConnect on the recurrent matrix (Merity et al. 2017: `drop_connect`);
- variational recurrent dropout (Gal and Ghahramani 2016: `variational_mask`), one mask per
  sequence on h_{t-1} where it enters the recurrent matmuls;
- zoneout (Krueger et al. 2016: `zoneout_masks`, `zoneout`).

The key derivations (`fold_in(key, 1)` for weight drop, `2 + part` for zoneout, 3 for the
variational mask) are part of what a run computes: changing one changes every result.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def window_key(key, window):
    """The key of this window's randomness: `fold_in(key, window)` (None: the whole sequence)."""
    return key if key is None or window is None else jax.random.fold_in(key, window)


def dropout(xs, key, rate: float):
    """Inverted dropout: each entry zeroed with probability `rate`, the rest scaled by
    1/(1-rate)."""
    keep = jax.random.bernoulli(key, 1.0 - rate, xs.shape)
    return jnp.where(keep, xs / (1.0 - rate), 0.0).astype(xs.dtype)


def variational_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
    """The variational recurrent dropout mask an `rnn` layer draws from its sequence key:
    0 where a unit is dropped, 1/(1-rate) where kept (float32)."""
    keep = jax.random.bernoulli(jax.random.fold_in(key, 3), 1.0 - rate, shape)
    return jnp.where(keep, 1.0 / (1.0 - rate), 0.0)


def with_recurrent_mask(cell_params, h_mask):
    """The params a variational cell's step reads its mask from (`cells.base.recurrent_input`:
    the cells' contract): the layer's own params never hold it."""
    return cell_params if h_mask is None else {**cell_params, "h_mask": h_mask}


def drop_connect(cell_params, key, rate):
    """The cell's params with entries of `w_h` dropped (and the rest scaled by 1/(1-rate))."""
    w_h = cell_params["w_h"]
    keep = jax.random.bernoulli(key, 1.0 - rate, w_h.shape)
    return {**cell_params, "w_h": jnp.where(keep, w_h / (1.0 - rate), 0.0).astype(w_h.dtype)}


def weight_drop(cell_params, key, rate):
    """`drop_connect` with the window's key, where the cell has a recurrent matrix `w_h` and a
    key is given (training)."""
    if key is None or rate <= 0.0 or "w_h" not in cell_params:
        return cell_params
    return drop_connect(cell_params, jax.random.fold_in(key, 1), rate)


def zoneout_masks(carry, rates, key, T):
    """Per part of the carry: its rate, and its keep-masks of every step `[T, ...]` (None
    without a key: evaluation)."""
    parts = jax.tree_util.tree_leaves(carry)
    if len(rates) not in (1, len(parts)):
        raise ValueError(f"zoneout has {len(rates)} rates for a carry of {len(parts)} parts: "
                         "give one rate, or one per part")
    rates = rates if len(rates) == len(parts) else rates * len(parts)
    return rates, [None if key is None else jax.random.bernoulli(
        jax.random.fold_in(key, 2 + i), z, (T, *part.shape))
        for i, (z, part) in enumerate(zip(rates, parts))]


def zoneout(old, new, rates, keep_t):
    """Each part of the carry: the old value where its mask keeps it (training), else the new
    one; without masks the mixture z * old + (1 - z) * new (evaluation)."""
    olds, treedef = jax.tree_util.tree_flatten(old)
    mixed = [z * o + (1 - z) * n if keep is None else jnp.where(keep, o, n)
             for o, n, z, keep in zip(olds, jax.tree_util.tree_leaves(new), rates, keep_t)]
    return jax.tree_util.tree_unflatten(treedef, mixed)
