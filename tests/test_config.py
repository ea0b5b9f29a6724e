"""The config schema (`rnnlab.config`), its rule tables, and the overrides set on it."""

import ast
import json
import pathlib
import re

import ml_collections
import pytest

from configs import base
from rnnlab import config as config_lib
from rnnlab import overrides, sample, validation

ROOT = pathlib.Path(__file__).resolve().parents[1]
TABLES = {"SEED": config_lib.SEED, "TRAIN": config_lib.TRAIN, "DATA": config_lib.DATA,
          "EVAL": config_lib.EVAL}


def test_configs_base_is_the_library_schema():
    assert base.get_config().to_dict() == config_lib.get_config().to_dict()
    assert (base.variant, base.smoke, base.placeholder) == (
        config_lib.variant, config_lib.smoke, config_lib.placeholder)


def imported_modules(path) -> set[str]:
    """The modules a file's code imports (not its docstrings' examples)."""
    tree = ast.parse(path.read_text())
    return {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
            for alias in node.names} | {node.module or "" for node in ast.walk(tree)
                                         if isinstance(node, ast.ImportFrom)}


def test_the_library_does_not_import_the_user_configs_folder():
    importing = [str(p.relative_to(ROOT)) for p in (ROOT / "rnnlab").rglob("*.py")
                 if any(m == "configs" or m.startswith("configs.")
                        for m in imported_modules(p))]
    assert importing == []
    assert "configs" in imported_modules(ROOT / "configs" / "quickstart.py")  # (it can fail)


def test_every_key_is_declared_once_with_its_comment():
    lines = (ROOT / "rnnlab" / "config.py").read_text().splitlines()
    assignment = re.compile(r"^\s+\w\.(\w+) = (?!_\w+\(\))")  # (not a section: c.task = _task())
    declared = {}
    for i, line in enumerate(lines):
        match = assignment.match(line)
        if match and not line.strip().startswith("#"):
            commented = "  # " in line or lines[i - 1].strip().startswith("#")
            declared.setdefault(match.group(1), []).append(commented)
    keys = overrides.known_keys(config_lib.get_config())
    for key in keys:
        leaf = key.rsplit(".", 1)[-1]
        assert leaf in declared and all(declared[leaf]), f"{key} has no comment"
    # Each assignment is one key: as many assignments as keys (a leaf name may repeat across
    # sections, e.g. data.name and task.name, so count per leaf).
    counts = {}
    for key in keys:
        counts[key.rsplit(".", 1)[-1]] = counts.get(key.rsplit(".", 1)[-1], 0) + 1
    assert {leaf: len(found) for leaf, found in declared.items()} == counts


@pytest.mark.parametrize("table", TABLES)
def test_rule_tables_name_declared_keys_and_accept_the_defaults(table):
    config = config_lib.get_config()
    known = set(overrides.known_keys(config))
    for key, rule in TABLES[table].items():
        assert key in known, key
        assert rule.ok(config_lib.value(config, key)), f"the default of {key} breaks its rule"


@pytest.mark.parametrize("key, bad, allowed", [
    ("seed", -1, "an integer from 0 to 4294967294"),
    ("seed", True, "an integer from 0 to 4294967294"),
    ("train.steps", 0, "a positive integer"),
    ("train.bptt_len", -1, "an integer >= 0 (0: full BPTT where the task allows it)"),
    ("train.eval_batches", -2, ">= 0 (0: the default)"),
    ("train.log_gradients", 1, "True or False"),
    ("data.max_digits", 9, "an integer in [1, 8]"),
    ("data.length", 1, "an integer >= 2"),
    ("data.delay", 0, "an integer >= 1"),
    ("eval.beam_size", 0, "a positive integer"),
    ("eval.length_penalty", -0.5, ">= 0"),
])
def test_a_refused_value_names_the_key_what_is_allowed_and_the_value(key, bad, allowed):
    config = config_lib.get_config()
    section, _, leaf = key.rpartition(".")
    with config.ignore_type():
        (config[section] if section else config)[leaf] = bad
    table = next(t for t in TABLES.values() if key in t)
    with pytest.raises(ValueError) as info:
        config_lib.check(config, table)
    assert str(info.value).startswith(f"{key} must be {allowed}")
    assert str(info.value).endswith(f", got {bad!r}")


def test_check_reads_only_the_keys_it_is_given():
    config = config_lib.get_config()
    config.data.length = 1  # a copy task reads data.delay, not data.length
    config_lib.check(config, config_lib.DATA, ("data.delay", "data.eval_examples"))
    with pytest.raises(ValueError, match="data.length must be"):
        config_lib.check(config, config_lib.DATA)


def test_check_config_runs_the_tables_then_the_task_then_the_optimizer():
    config = config_lib.get_config()
    config.train.steps = 0
    config.optim.lr = -1.0
    with pytest.raises(validation.ConfigError, match="train.steps must be a positive integer"):
        validation.check_config(config)
    config.train.steps = 10
    with pytest.raises(validation.ConfigError, match=r"optim.lr=-1.0 is invalid"):
        validation.check_config(config)
    config.optim.lr = 1e-3
    validation.check_config(config)


# ------------------------------------------------------------------------------ overrides


def test_overrides_set_values_on_a_copy_and_keep_its_lock():
    config = config_lib.get_config()
    changed = overrides.apply(config, {"model.cell": "gru", "optim.lr": 3, "seed": 4})
    assert (changed.model.cell, changed.optim.lr, changed.seed) == ("gru", 3.0, 4)
    assert isinstance(changed.optim.lr, float)  # the declared type: an int becomes a float
    assert config.model.cell == "lstm" and not changed.is_locked
    config.lock()
    assert overrides.apply(config, {"seed": 1}).is_locked


@pytest.mark.parametrize("change, message", [
    ({"model.cel": "gru"}, "override 'model.cel': the config has no key 'cel'"),
    ({"mdl.cell": "gru"}, "override 'mdl.cell': the config has no section 'mdl'"),
    ({"model.cell.x": 1}, "override 'model.cell.x': the config has no section 'cell'"),
    ({"train.steps": "ten"}, "override 'train.steps': 'ten' has the wrong type ("),
    ({"model": "gru"}, "override 'model': 'gru' has the wrong type ("),
])
def test_a_bad_override_is_one_line_naming_it(change, message):
    for config in (config_lib.get_config(), config_lib.get_config().lock()):
        with pytest.raises(ValueError) as info:
            overrides.apply(config, change)
        assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_an_old_run_config_loads_over_the_schema_unchanged():
    # A run of 2026-12-06: every key it wrote is still declared, with the same value and type.
    old = json.loads((ROOT / "tests" / "fixtures" / "lm_run" / "config.json").read_text())
    loaded = json.loads(sample.with_defaults(old).to_json_best_effort())

    def restricted(new, old):
        return {k: restricted(new[k], v) if isinstance(v, dict) else new[k]
                for k, v in old.items()}

    assert restricted(loaded, old) == old
    assert isinstance(sample.with_defaults(old), ml_collections.ConfigDict)
