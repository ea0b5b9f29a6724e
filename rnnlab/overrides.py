"""Dotted config overrides (`{"model.cell": "gru", "optim.lr": 3e-3}`), as sweeps write them."""

from __future__ import annotations

from typing import Any

import ml_collections


def apply(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> ml_collections.ConfigDict:
    """A copy of `config` with `overrides` set; an unknown key or a wrong type is a ValueError.

    ConfigDict checks each value's type against the declared one (an int where a float is
    declared is fine), exactly as `--config.key=value` does.
    """
    config = config.copy_and_resolve_references()
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
                raise ValueError(f"override {key!r}: the config has no section {part!r}")
            node = node[part]
        if leaf not in node:
            raise ValueError(f"override {key!r}: the config has no key {leaf!r}")
        try:
            node[leaf] = value
        except TypeError as e:
            raise ValueError(f"override {key!r}: {value!r} has the wrong type ({e})") from e
    return config
