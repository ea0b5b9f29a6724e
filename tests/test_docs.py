"""Every command shown in a README, in a config's or experiment's docstring or in a help text:
its module or script exists, it passes only flags that module defines, the files it names
exist, its `--config.KEY` overrides name real keys, and the run configs it names (with those
overrides) validate. (The commands that train are run by the tests of what they do; this
catches the stale ones: a renamed flag, a moved file, a misspelt key.)"""

import importlib.util
import pathlib
import re
import shlex
import sys

import pytest

from configs import base
from rnnlab import overrides, validation
from test_train import ROOT

SOURCES = sorted(
    [ROOT / "README.md", ROOT / "benchmarks" / "README.md"]
    + list((ROOT / "experiments").glob("*/README.md")) + list((ROOT / "configs").glob("*.py"))
    + list((ROOT / "experiments").glob("*/*.py")) + list((ROOT / "launch").rglob("*.py"))
    + list((ROOT / "rnnlab").rglob("*.py")) + list((ROOT / "benchmarks").glob("*.py"))
    + list((ROOT / "docs").glob("*.md")))
NOT_OURS = ("venv", "pip", "pytest")
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{2,}\b|\.\.\.")  # RUN, FILE, N_STEPS, ...


def shown_commands():
    for path in SOURCES:
        text = re.sub(r"\\\n\s*", " ", path.read_text())  # continued lines joined
        for match in re.finditer(r"python3? (?:-m [\w.]+|[\w/]+\.py)[^\n`]*", text):
            command = match.group(0).split(" && ")[0].split(" | ")[0].strip()
            words = command.split()
            if words[1] == "-m" and words[2] in NOT_OURS:
                continue
            yield f"{path.relative_to(ROOT)}: {command}"


COMMANDS = sorted(set(shown_commands()))


def source_of(target: str) -> pathlib.Path:
    """The file a shown command runs: a script, a module, or a package's `__main__.py`."""
    if target.endswith(".py"):
        return ROOT / target
    path = ROOT / (target.replace(".", "/") + ".py")
    return path if path.exists() else ROOT / target.replace(".", "/") / "__main__.py"


def module_flags(target: str) -> set[str]:
    """The flags the module or script defines in its source (absl's `DEFINE_*("name", ...)`,
    argparse's `add_argument("--name", ...)`): read, not run, to keep the suite fast."""
    source = source_of(target).read_text()
    return set(re.findall(r"DEFINE_\w+\(\s*\"([\w.]+)\"", source)) | set(
        re.findall(r"add_argument\(\s*\"--(\w+)\"", source))


KNOWN_KEYS = set(overrides.known_keys(base.get_config()))


def _value(text: str):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def test_commands_were_found():
    assert len(COMMANDS) > 60
    assert any("launch.sweep" in c for c in COMMANDS) and any("diagnose" in c for c in COMMANDS)


@pytest.mark.parametrize("shown", COMMANDS)
def test_every_shown_command_names_what_exists(shown):
    where, command = shown.split(": ", 1)
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    target = tokens[2] if tokens[1] == "-m" else tokens[1]
    args = tokens[3:] if tokens[1] == "-m" else tokens[2:]
    path = source_of(target)
    assert path.is_file() or importlib.util.find_spec(target) is not None, f"{where}: {target}"
    defined = module_flags(target)
    config_file, changes = None, {}
    for arg in args:
        if not arg.startswith("--"):
            continue
        name, _, value = arg[2:].partition("=")
        if name.startswith("config."):
            key = name[len("config."):]
            if key == "k":  # the generic `--config.k=v`
                continue
            assert key in KNOWN_KEYS, f"{where}: {arg}: no config key {key}"
            if not PLACEHOLDER.search(value):
                changes[key] = _value(value)
            continue
        assert name in defined or name.removeprefix("no") in defined, (
            f"{where}: {target} has no flag --{name}")
        for part in value.split(","):
            file = part.partition(":")[0]
            if file.endswith(".py") and not PLACEHOLDER.search(file):
                assert (ROOT / file).is_file(), f"{where}: {arg}: {file} does not exist"
        if name == "config" and not PLACEHOLDER.search(value):
            config_file = value
    if target == "rnnlab.main" and config_file:
        file, _, config_arg = config_file.partition(":")
        spec = importlib.util.spec_from_file_location("shown_config", ROOT / file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config(config_arg or None)
        validation.check_config(overrides.apply(config, changes))


@pytest.mark.parametrize("path", [p for p in SOURCES if p.suffix == ".py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_help_texts_keep_their_line_continuations(path):
    """A module docstring is a command's --help: a backslash at a line's end in a plain
    string joins the lines (a run of spaces where the break was); a raw one keeps it."""
    source = path.read_text()
    doc = __import__("ast").get_docstring(__import__("ast").parse(source), clean=False)
    assert doc is None or not re.search(r"\S {6,}--", doc), (
        f"{path.relative_to(ROOT)}: make the docstring raw (r\"\"\"...\"\"\") to keep its \\ lines")
