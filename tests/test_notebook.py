"""The example notebook, executed in a real Jupyter kernel (nbclient), and the commands and
API it stands on: `rnnlab.api` and `python -m rnnlab.curves`."""

import json
import shutil
import subprocess
import sys

import pytest

from rnnlab import api
from test_train import ROOT

nbformat = pytest.importorskip("nbformat")  # (the test extra has nbclient and ipykernel)
nbclient = pytest.importorskip("nbclient")


def test_the_example_notebook_runs_in_a_kernel_and_shows_its_progress(tmp_path):
    shutil.copy(ROOT / "examples" / "notebook.ipynb", tmp_path / "notebook.ipynb")
    notebook = nbformat.read(tmp_path / "notebook.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "step 20/60" in text and "valid bpc" in text  # the loop's progress, in the notebook
    assert "finished at step 60" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # run.plot()
    assert "Traceback" not in text and "Logging before flag parsing" not in text
    assert "'The " in text  # the sampled continuation, printed
    run = api.load(tmp_path / "runs" / "notebook")
    assert run.result["status"] == "finished" and run.result["step"] == 60
    assert [m["step"] for m in run.metrics("valid")] == [20, 40, 60]
    # The curves of that run from the command line, and the one-line errors.
    done = subprocess.run([sys.executable, "-m", "rnnlab.curves", f"--workdir={run.path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run.path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    for args, message in (([f"--workdir={tmp_path}"], "has no metrics.jsonl"),
                          ([f"--workdir={run.path}", "--metric=nope"], "logged no 'nope'")):
        bad = subprocess.run([sys.executable, "-m", "rnnlab.curves", *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
    with pytest.raises(FileNotFoundError, match="holds no run"):
        api.load(tmp_path)
    assert json.loads((ROOT / "examples" / "notebook.ipynb").read_text())["cells"]
