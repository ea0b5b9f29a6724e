"""Dotted config overrides (`{"model.cell": "gru", "optim.lr": 3e-3}`), as sweeps write them."""

from __future__ import annotations

import atexit
import gc
from typing import Any, Callable

import ml_collections

from rnnlab import config as config_lib


def apply(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> ml_collections.ConfigDict:
    """A copy of `config` with `overrides` set; an unknown key or a wrong type is a ValueError.

    Each value is set by ml_collections itself (`update_from_flattened_dict`, which checks its
    type against the declared one exactly as `--config.key=value` does: an int where a float is
    declared is fine), on the copy locked so that no key can be added. What is kept here is the
    one-line error naming the override and the part of its key that the config lacks:
    ml_collections' KeyError names neither the same way for a leaf and for a section.
    """
    config = config.copy_and_resolve_references()
    was_locked = config.is_locked
    config.lock()
    try:
        for key, value in overrides.items():
            try:
                config.update_from_flattened_dict({key: value})
            except KeyError:
                raise ValueError(f"override {key!r}: {_missing(config, key)}") from None
            except TypeError as e:
                raise ValueError(f"override {key!r}: {value!r} has the wrong type ({e})") from e
    finally:
        if not was_locked:
            config.unlock()
    return config


def _missing(config: ml_collections.ConfigDict, key: str) -> str:
    """What `config` lacks of the dotted `key`: "the config has no section/key NAME"."""
    *parents, leaf = key.split(".")
    for part in parents:
        if part not in config or not isinstance(config[part], ml_collections.ConfigDict):
            return f"the config has no section {part!r}"
        config = config[part]
    return f"the config has no key {leaf!r}"


def known_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every dotted key of `config` (`model.cell`, `optim.lr`, ...)."""
    keys = []
    for name, value in config.items():
        path = f"{prefix}{name}"
        if isinstance(value, ml_collections.ConfigDict):
            keys += known_keys(value, path + ".")
        else:
            keys.append(path)
    return keys


# What other libraries call rnnlab's keys (a misspelling by meaning, not by letters).
OTHER_NAMES = {"learning_rate": "lr", "hidden": "hidden_size", "units": "hidden_size",
               "layers": "num_layers", "n_layers": "num_layers", "batch": "batch_size",
               "seq_len": "bptt_len", "sequence_length": "bptt_len", "epochs": "steps",
               "num_steps": "steps", "cell_type": "cell", "rnn_type": "cell",
               "grad_clip": "clip_norm", "optimizer": "name", "wd": "weight_decay"}


def suggest(key: str, known: list[str]) -> list[str]:
    """Up to three known keys the dotted `key` may have meant: by another library's name for
    it (`optim.learning_rate` -> `optim.lr`), then by spelling."""
    import difflib

    section, _, leaf = key.rpartition(".")
    by_name = [k for k in known if k.rpartition(".")[2] == OTHER_NAMES.get(leaf)
               and (not section or k.startswith(section + "."))]
    return list(dict.fromkeys(by_name + difflib.get_close_matches(key, known, n=3)))[:3]


def parse_flags(argv: list[str]) -> list[str]:
    """absl's `flags_parser` for rnnlab's commands: a misspelt `--config.key=value` (which
    ml_collections reports with a traceback), a value of the wrong type, a config file that is
    missing or raises, and any other bad flag get one line and exit code 2 (absl: its usage
    text and 1)."""
    import pathlib
    import sys

    from absl import flags

    try:
        rest = flags.FLAGS(argv)
        if "config" in flags.FLAGS and flags.FLAGS["config"].value is not None:
            flags.FLAGS["config"].value.keys()  # (a file that failed to load raises here)
        return rest
    except (AttributeError, KeyError) as e:  # ml_collections, on a key the config lacks
        known = known_keys(config_lib.get_config())
        unknown = [a[len("--config."):].split("=")[0] for a in argv[1:]
                   if a.startswith("--config.") and a[len("--config."):].split("=")[0] not in known]
        message = "; ".join(
            f"--config.{key} is not a config key"
            + (f" (did you mean {', '.join(guesses)}?)" if (guesses := suggest(key, known))
               else "") for key in unknown
        ) or f"the --config file: {e}"  # (one that defines no get_config, say)
    except flags.Error as e:
        # A config file that raised: ml_collections wraps its traceback; its last line says it.
        lines = [line for line in str(e).splitlines() if line.strip()]
        message = (str(e) if len(lines) < 2
                   else f"{lines[0].split(': Error whilst')[0]}: {lines[-1]}")
        if "--config" not in message:  # another flag of the command
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)
    except OSError as e:  # a --config file that is not there
        configs = sorted(p.name for p in pathlib.Path("configs").glob("*.py")
                         if p.name not in ("__init__.py", "base.py"))
        given = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "")
        message = (f"cannot read the --config file {given.partition(':')[0]!r}"
                   + (f"; configs/ has {', '.join(configs)}" if configs else "")
                   + (f" ({e.strerror})" if e.strerror else ""))
    print(f"error: bad config: {message}", file=sys.stderr)
    sys.exit(2)


def run(main: Callable[[list[str]], Any]) -> None:
    """Runs an rnnlab command: `absl.app.run(main)` with `parse_flags`.

    The garbage collector leaves alone what the imports made (`gc.freeze`: JAX's modules and
    tables, never garbage), and at exit what the command made: a run leaves about a million
    objects behind (JAX's caches and traced programs), and collecting them only to exit took
    0.5 s of a smoke run's 6.5 s, the collections during the run over the imports' objects
    another 0.2 s (2026-12-07; a sweep's trials and the tests start hundreds of runs). Nothing
    a run writes waits on a finaliser: every file is written and closed (atomically) before it
    ends."""
    from absl import app

    gc.freeze()
    atexit.register(gc.freeze)
    app.run(main, flags_parser=parse_flags)
