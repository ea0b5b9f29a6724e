"""The worked examples of docs/ARCHITECTURE.md run as written: each "Adding ..." section's
Python blocks, in order, as one script in a fresh directory (where configs/ is the
repository's). A block whose first line is `# file: NAME.py` is written there as a module (for
the blocks after it to import); the others make the script, whose asserts are the example's
checks."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "ARCHITECTURE.md"


def examples() -> dict[str, list[str]]:
    """{section title: its Python blocks} of the sections that show how to add something."""
    out, title, block = {}, None, None
    for line in PAGE.read_text().splitlines(keepends=True):
        if block is not None:  # inside a fenced block
            if line.startswith("```"):
                if title is not None and language == "python":
                    out[title].append("".join(block))
                block = None
            else:
                block.append(line)
        elif line.startswith("```"):
            block, language = [], line[3:].strip()
        elif line.startswith("#"):
            name = line.lstrip("#").strip()
            title = name if name.startswith("Adding") else None
            if title is not None:
                out[title] = []
    return out


EXAMPLES = examples()


def test_the_page_shows_how_to_add_each_kind_of_thing():
    assert {"Adding a cell", "Adding a task", "Adding a layer path", "Adding an executor"} <= set(
        EXAMPLES), sorted(EXAMPLES)
    assert all(EXAMPLES.values()), "a section without a Python example"


@pytest.mark.parametrize("title", sorted(EXAMPLES))
def test_worked_example_runs(title, tmp_path):
    """In a process of its own, so that what an example registers stays there."""
    (tmp_path / "configs").symlink_to(ROOT / "configs")  # commands name configs/... as shown
    script = []
    for block in EXAMPLES[title]:
        first = block.splitlines()[0]
        if first.startswith("# file: "):
            (tmp_path / first.removeprefix("# file: ").strip()).write_text(block)
        else:
            script.append(block)
    (tmp_path / "example.py").write_text("\n".join(script))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_task_of_ones_own_is_named_by_its_module_and_checked(tmp_path, monkeypatch):
    from rnnlab import tasks

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_task.py").write_text("import not_a_module_anywhere\n")
    with pytest.raises(ValueError, match=r"task.name 'broken_task': cannot import it: No module "
                                         r"named 'not_a_module_anywhere'"):
        tasks.get("broken_task")
    (tmp_path / "pkg_half").mkdir()
    (tmp_path / "pkg_half" / "__init__.py").write_text("")
    (tmp_path / "pkg_half" / "task.py").write_text("def check(config):\n    pass\n")
    with pytest.raises(ValueError, match="it lacks build, model, metric_names"):
        tasks.get("pkg_half.task")
    with pytest.raises(ValueError, match=r"unknown task.name 'nope'; known tasks: adding, .*"
                                         r"\(or a task module of your own on the PYTHONPATH\)"):
        tasks.get("nope")
    assert tasks.get("lm") is tasks.TASKS["lm"]
