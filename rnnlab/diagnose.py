r"""The `rnnlab.diagnose` command (the library is `rnnlab.diagnostics`): look inside a run.

Gradient flow through time, hidden units over a text, gate saturation:

    python -m rnnlab.diagnose gradients --workdir=runs/adding [--checkpoint=best|last|init|STEP]
    python -m rnnlab.diagnose units --workdir=runs/quickstart [--text=FILE] [--length=2000] \
        [--units=layer_0/c/17,layer_0/h/3] [--top=3]
    python -m rnnlab.diagnose gates --workdir=runs/quickstart [--batches=20]
    python -m rnnlab.diagnose gradients --config=configs/adding.py --config.data.length=100

`--checkpoint`: `best` (default), `last`, a step number, or `init` (the run's parameters at
step 0, from its seed). With `--config` instead of `--workdir`, the model is freshly initialised
from that config (no run needed). Results go to `--out` (default WORKDIR/diagnostics, or
`runs/diagnostics/<task>` with `--config`):

- gradients.json / gradients.png: per recurrent layer, the norm of dL/dh_t for each state of
  one training batch's window (t = 0: the carry the window starts from; mean, std, min and max
  over the batch), for the loss of the last step only and for the whole (summed) loss, and the
  spectral radius and largest singular value of each recurrent matrix (per gate for LSTM and
  GRU). Tasks trained with truncated BPTT windows over one sequence are measured with full
  BPTT.
- units.html / units.png / units.json (language models): each character of the text coloured
  by chosen units' values after reading it, and the units that best track quotes, bracket
  depth, line position, indentation and comments (Pearson r).
- gates.json: the fraction of each gate's activations below --low and above --high
  (saturation), per layer, over --batches validation batches (0: the whole split).

Every output (gradients.json, units.json, gates.json, and the console) also says in "paths"
which path each recurrent layer ran: `{layer: path}`. A watched layer runs the sequential path
(`rnnlab.layers.paths.choose_path`), which computes the same values as the hand-derived
backward or the parallel scan that training may run, but shows its steps.
Exit code 2 for a bad flag, config or run directory (one line on stderr).
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from rnnlab import checkpoint as checkpoint_lib
from rnnlab import compile_cache
from rnnlab import data as data_lib
from rnnlab import diagnostics, optim, rundir, storage, tasks, validation
from rnnlab.train import state as state_lib
from rnnlab.run import load as load_lib
from rnnlab.tasks import lm

WHATS = ("gradients", "units", "gates")


class Subject:
    """What is diagnosed: a task, its params and train carry at a step, and where to write."""

    def __init__(self, config, task, state, label, out):
        self.config, self.task, self.state, self.label, self.out = (
            config, task, state, label, storage.path(out))

    def write(self, name: str, text: str | bytes) -> pathlib.Path:
        self.out.mkdir(parents=True, exist_ok=True)
        storage.write_atomic(self.out / name, text)
        return self.out / name


def _full_bptt(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Sequence tasks read with truncated BPTT windows are measured with full BPTT (the
    windows would cut the gradient being measured); the LM's windows are its batches."""
    if config.task.name == "lm" or not config.train.bptt_len:
        return config
    config = ml_collections.ConfigDict(config.to_dict())
    logging.info("measuring with full BPTT (the run trains with train.bptt_len=%d)",
                 config.train.bptt_len)
    config.train.bptt_len = 0
    return config


def load(workdir=None, config=None, checkpoint: str = "best", out=None, *,
         allow_changed_data: bool = False) -> Subject:
    """The run in `workdir` at `checkpoint`, or a fresh init of `config`. A run's data must be
    the data it was trained on, unless `allow_changed_data` (every output then says so)."""
    if (workdir is None) == (config is None):
        raise ValueError("pass either --workdir=RUN or --config=FILE")
    if checkpoint not in ("best", "last", "init") and not str(checkpoint).isdigit():
        raise ValueError(f"--checkpoint must be best, last, init or a step number, got "
                         f"{checkpoint!r}")
    if config is not None:
        validation.check_config(config)
    else:
        config, _ = load_lib.load_run(workdir)
    config = _full_bptt(config)
    task = tasks.build(config)
    changed = workdir is not None and rundir.data_mismatch(workdir, task.fingerprint)
    if changed and not allow_changed_data:
        raise rundir.RunDirError(f"{changed}: pass --allow_changed_data to diagnose it on this "
                                 "data anyway")
    tx = optim.make_optimizer(config.optim, config.train.steps)
    if workdir is None or checkpoint == "init":
        state = state_lib.init_state(config, task.model, tx, task.metrics)
        label = "initialisation"
    else:
        restored = load_lib.load_state(workdir, config, task.model, checkpoint=checkpoint)
        state, label = restored.state, f"step {restored.step} ({checkpoint} checkpoint)"
    if changed:
        logging.warning("%s", changed)
        label += ", on data other than the run's"
    if out is None:
        out = (storage.path(workdir) / "diagnostics" if workdir is not None
               else pathlib.Path("runs") / "diagnostics" / config.task.name)
    _check_writable(storage.path(out))
    return Subject(config, task, state, label, out)


def _check_writable(out) -> None:
    """Before any compute: `out` is (or can be made) a directory this process may write."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        if storage.is_local(out):
            tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise ValueError(f"cannot write the diagnostics to {out} "
                         f"({e.strerror or type(e).__name__}): pass --out=DIR, a directory "
                         "this process may write") from None


def gradients(subject: Subject) -> dict:
    task = subject.task
    norms = jax.jit(lambda state, data: diagnostics.gradient_norms(task, state, data))(
        subject.state, task.data)
    paths = diagnostics.gradient_paths(task, subject.state, task.data)
    result = {"at": subject.label, "paths": paths,
              "objectives": {obj: {layer: diagnostics.summarize(n) for layer, n in by.items()}
                             for obj, by in norms.items()},
              "spectra": diagnostics.recurrent_spectra(subject.state.params,
                                                       subject.config.model.cell)}
    subject.write("gradients.json", json.dumps(result, indent=1) + "\n")
    _plot_gradients(subject, result)
    for obj, by in result["objectives"].items():
        for layer, s in by.items():
            mean = s["mean"]
            ratio = f"{mean[0] / mean[-1]:.3g}" if mean[-1] else "n/a"
            print(f"{obj:9s} {layer:24s} mean ||dL/dh_t||: t=0 {mean[0]:.3g}, "
                  f"t={len(mean) - 1} {mean[-1]:.3g} (ratio {ratio})")
    for layer, blocks in result["spectra"].items():
        print(f"spectra   {layer:24s} " + ", ".join(
            f"{b}: rho {v.get('spectral_radius', float('nan')):.3g} sigma {v['sigma_max']:.3g}"
            for b, v in blocks.items()))
    _print_paths(paths)
    return result


def _print_paths(paths: dict[str, str]) -> None:
    """The console's line of which path each layer ran (the outputs' "paths")."""
    print("paths     " + ", ".join(f"{layer}: {path}" for layer, path in paths.items())
          + " (what these diagnostics measured; training may run another path)")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.warning("matplotlib cannot be imported (it comes with rnnlab: pip install -e . "
                        "again): no PNG")
        return None
    return plt


def _save_figure(subject, fig, name):
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    subject.write(name, buffer.getvalue())


def _plot_gradients(subject, result):
    plt = _pyplot()
    if plt is None:
        return
    objectives = result["objectives"]
    fig, axes = plt.subplots(1, len(objectives), figsize=(6 * len(objectives), 4),
                             squeeze=False)
    for ax, (obj, by) in zip(axes[0], objectives.items()):
        for layer, s in by.items():
            t = np.arange(len(s["mean"]))
            mean, low, high = (np.where(np.asarray(s[k]) > 0, s[k], np.nan)  # log axis
                               for k in ("mean", "min", "max"))
            line, = ax.plot(t, mean, label=layer)
            ax.fill_between(t, low, high, color=line.get_color(), alpha=0.15)
        ax.set_yscale("log")
        ax.set_xlabel("t (state read by step t+1)")
        ax.set_ylabel("||dL/dh_t|| (mean; band: min-max)")
        ax.set_title(f"{'last-step loss' if obj == 'last_step' else 'summed loss'}")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    fig.suptitle(f"gradient flow through time, {subject.config.model.cell}, {subject.label}")
    _save_figure(subject, fig, "gradients.png")
    plt.close(fig)


def units(subject: Subject, text: str | None = None, length: int = 2000,
          chosen: list[str] | None = None, top: int = 3) -> dict:
    config, task = subject.config, subject.task
    if config.task.name != "lm":
        raise ValueError(f"units reads a text through a character model; this is a "
                         f"{config.task.name!r} run (use gradients or gates)")
    if length <= 0:
        raise ValueError(f"--length must be positive, got {length}")
    vocab = lm.vocab(task.record)
    if text is None:  # the validation split's beginning
        text = data_lib.decode(vocab, data_lib.load_corpus(config.data).splits["valid"][:length])
    text = text[:length]
    if len(text) < 2:
        raise ValueError("units needs a text of at least 2 characters")
    tokens = lm.encode_prime(vocab, text)[None, :]
    model = task.model

    def apply(params, tokens, tap):
        return model.apply(params, model.initial_carry(params, (1,)), tokens, tap=tap)

    acts, labels, paths = diagnostics.unit_states(apply, subject.state.params,
                                                  jnp.asarray(tokens))
    features = diagnostics.text_features(text)
    found = diagnostics.search_units(acts, labels, features, top=top)
    if chosen:
        unknown = [u for u in chosen if u not in labels]
        if unknown:
            raise ValueError(f"unknown unit(s) {', '.join(unknown)}; units are named like "
                             f"{labels[0]} (layer/part/index; {len(labels)} in all)")
    else:  # the best unit of each feature
        chosen = list(dict.fromkeys(units[0][0] for units in found.values()))
    tracks = {}  # unit -> the feature it ranks best for (its first such)
    for rank in range(top):
        for feature, units in found.items():
            if rank < len(units):
                tracks.setdefault(units[rank][0], (feature, units[rank][1]))
    columns = {}
    for label in chosen:
        caption = label
        if label in tracks:
            caption += f" (tracks {tracks[label][0]}, r = {tracks[label][1]:+.2f})"
        columns[caption] = acts[:, labels.index(label)]
    subject.write("units.html", diagnostics.units_html(
        text, columns, title=f"hidden units, {config.model.cell}, {subject.label}"))
    result = {"at": subject.label, "characters": len(text), "units": len(labels),
              "found": {f: [{"unit": u, "r": r} for u, r in units] for f, units in found.items()},
              "shown": chosen, "paths": paths}
    subject.write("units.json", json.dumps(result, indent=1) + "\n")
    _plot_units(subject, text, acts, labels, chosen, tracks)
    for feature, units in found.items():
        print(f"{feature:14s} " + ", ".join(f"{u} (r={r:+.2f})" for u, r in units))
    _print_paths(paths)
    return result


def _plot_units(subject, text, acts, labels, chosen, tracks, lines=16, columns=80):
    """The HTML view as an image: the first `lines` lines of the text (up to `columns`
    characters each), every character on its unit's colour, one panel per unit."""
    plt = _pyplot()
    if plt is None:
        return
    import matplotlib

    rows = text.split("\n")[:lines]
    fig, axes = plt.subplots(len(chosen), 1, squeeze=False, layout="constrained",
                             figsize=(columns * 0.11, len(chosen) * (lines * 0.2 + 0.4)))
    for ax, label in zip(axes[:, 0], chosen):
        values = acts[:, labels.index(label)]
        scale = float(np.max(np.abs(values))) or 1.0
        image = np.ones((len(rows), columns, 3))
        position = 0
        for r, row in enumerate(rows):
            for c, ch in enumerate(row[:columns]):
                v = float(np.clip(values[position + c] / scale, -1, 1))
                fade = 1 - abs(v)
                image[r, c] = (fade, fade, 1.0) if v >= 0 else (1.0, fade, fade)
                if not ch.isspace():
                    ax.text(c, r, ch, ha="center", va="center", family="monospace", fontsize=7)
            position += len(row) + 1  # the newline
        ax.imshow(image, aspect="auto", interpolation="nearest")
        # The colours' values: red -scale, white 0, blue +scale (this panel's largest |value|).
        colours = matplotlib.colors.LinearSegmentedColormap.from_list(
            "unit", [(1.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.0, 0.0, 1.0)])
        fig.colorbar(matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(-scale, scale),
                                                  colours), ax=ax, label="value", pad=0.01)
        ax.set_xticks([])
        ax.set_yticks([])
        feature = f" (tracks {tracks[label][0]}, r = {tracks[label][1]:+.2f})" \
            if label in tracks else ""
        ax.set_title(f"{label}{feature}", fontsize=9, loc="left")
    fig.suptitle(f"unit values after each character (blue +, red -), {subject.label}",
                 fontsize=10)
    _save_figure(subject, fig, "units.png")
    plt.close(fig)


def gates(subject: Subject, batches: int = 20, low: float = 0.1, high: float = 0.9) -> dict:
    if not 0.0 < low < high < 1.0:
        raise ValueError(f"need 0 < --low < --high < 1, got {low} and {high}")
    if batches < 0:
        raise ValueError(f"--batches must be >= 0 (0: the whole split), got {batches}")
    task = subject.task
    windows = task.eval_windows["valid"]
    windows = min(batches, windows) if batches else windows
    counter = diagnostics.GateCounter(low, high)

    def run(params, data):
        return task.evaluate(params, data, "valid", windows, tap=counter)

    jax.block_until_ready(jax.jit(run)(subject.state.params, task.data))
    jax.effects_barrier()
    fractions = counter.fractions()
    if not fractions:
        raise ValueError(f"model.cell={subject.config.model.cell} has no gates")
    result = {"at": subject.label, "low": low, "high": high, "batches": windows,
              "paths": counter.paths, "saturation": fractions}
    subject.write("gates.json", json.dumps(result, indent=1) + "\n")
    for layer, by_gate in fractions.items():
        for gate, f in by_gate.items():
            print(f"{layer:24s} {gate:8s} below {low}: {f['below']:.3f}  above {high}: "
                  f"{f['above']:.3f}  ({f['count']} values)")
    _print_paths(counter.paths)
    return result


def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    checkpoint_lib.quiet_orbax_logs()
    compile_cache.enable()
    if len(argv) != 2 or argv[1] not in WHATS:
        print(f"error: say what to diagnose: python -m rnnlab.diagnose {{{'|'.join(WHATS)}}} "
              "--workdir=RUN (or --config=FILE)", file=sys.stderr)
        sys.exit(2)
    what = argv[1]
    try:
        subject = load(FLAGS.workdir, _CONFIG.value, FLAGS.checkpoint, FLAGS.out,
                       allow_changed_data=FLAGS.allow_changed_data)
        if what == "gradients":
            gradients(subject)
        elif what == "units":
            text = None
            if FLAGS.text:
                try:
                    text = pathlib.Path(FLAGS.text).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    raise ValueError(f"--text={FLAGS.text} cannot be read as UTF-8 text ({e})")
            units(subject, text, FLAGS.length, FLAGS.units or None, FLAGS.top)
        else:
            gates(subject, FLAGS.batches, FLAGS.low, FLAGS.high)
    except (ValueError, FileNotFoundError, data_lib.DataError, rundir.RunDirError,
            storage.StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {subject.out}")


if __name__ == "__main__":
    from absl import flags
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file(
        "config", None, "Instead of --workdir: a config file to diagnose at a fresh init.")
    flags.DEFINE_string("workdir", None, "The run directory to diagnose.")
    flags.DEFINE_string("checkpoint", "best", "best, last, init (step 0) or a step number.")
    flags.DEFINE_string("out", None, "Where to write (default WORKDIR/diagnostics).")
    flags.DEFINE_string("text", None, "units: a UTF-8 text file (default: the validation "
                        "split's beginning).")
    flags.DEFINE_integer("length", 2000, "units: characters of the text to read.")
    flags.DEFINE_list("units", [], "units: the units to show (default: the best unit of each "
                      "feature).")
    flags.DEFINE_integer("top", 3, "units: how many units to list per feature.")
    flags.DEFINE_integer("batches", 20, "gates: validation batches (0: the whole split).")
    flags.DEFINE_float("low", 0.1, "gates: a gate value below this is saturated near 0.")
    flags.DEFINE_float("high", 0.9, "gates: a gate value above this is saturated near 1.")
    flags.DEFINE_bool("allow_changed_data", False, "Diagnose a run on data other than its own "
                      "(every output says so).")
    from rnnlab import overrides

    overrides.run(main)
