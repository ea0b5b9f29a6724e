"""Predictions from a trained run, for every task: one input, or a file of them.

    python -m rnnlab.predict --workdir=runs/classify --input="The meal was superb" [--top=3]
    python -m rnnlab.predict --workdir=runs/addition --input="12+345" --beam=4 [--nbest=4]
    python -m rnnlab.predict --workdir=runs/quickstart --input="The " --length=200
    python -m rnnlab.predict --workdir=RUN --inputs=FILE --output=predictions.jsonl

What an input is, and what comes out, by task:
- lm: a prime text -> its continuation (`--length` characters at `--temperature`; 0: argmax).
- classify: a text -> the label and the `--top` labels' probabilities; regress: a text -> the
  value.
- seq2seq: a source text; vec2seq: a number -> the `--nbest` best outputs of a beam of
  `--beam` (1: greedy) with their scores (sums of log-probabilities, over
  ((5 + length) / 6) ** `--length_penalty`).
- adding: a JSON list of T [value, marker] pairs (two markers 1, the rest 0) -> the sum;
  parity: a string of T bits -> the parity and its probability (`task.target=running`: the
  parity of every prefix); copy: a string of the task's symbols, 0 blank, 1-8 data, 9 "go":
  10 data digits, delay - 1 blanks, a 9 and 10 blanks (e.g. delay 5:
  1234567812000090000000000) -> the output at every step and its last 10 (the recall).

A file holds one input a line (blank lines are skipped, with a warning: the outputs then
follow the non-blank lines). Inputs run in batches of `--batch_size` through one compiled
program (a language model's primes one at a time). Texts longer than a classifier was trained
on are cut as its training data was. Output: plain text on the terminal, or `--output=FILE`
as JSON lines (.jsonl) or CSV (.csv).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from rnnlab import data, decode, tasks
from rnnlab.run import load
from rnnlab.train import clock
from rnnlab.tasks import lm, seq2seq, synthetic


# The options each task reads (the others are refused when given: `given`).
READS = {"lm": ("length", "temperature", "seed"), "classify": ("top",), "regress": (),
         "seq2seq": ("beam", "nbest", "length_penalty"),
         "vec2seq": ("beam", "nbest", "length_penalty"), "adding": (), "parity": (), "copy": ()}


def predict(workdir, inputs: list[str], *, checkpoint: str = "best", top: int = 3,
            beam: int = 1, nbest: int | None = None, length_penalty: float = 0.0,
            length: int = 200, temperature: float = 0.8, seed: int = 0,
            batch_size: int = 32, given: tuple[str, ...] = ()) -> list[dict]:
    """One dict per input: {"input": ..., and what the run's task predicts} (module doc).
    `given`: the options the caller set on purpose; one the run's task does not read is a
    ValueError rather than ignored."""
    config, record = load.load_run(workdir)
    name = config.task.name
    if name not in PREDICTORS:
        raise ValueError(f"{workdir} is a {name!r} run: rnnlab.predict knows the tasks "
                         f"{', '.join(PREDICTORS)}")
    unread = [option for option in given if option not in READS[name]]
    if unread:
        reads = ", ".join(f"--{o}" for o in READS[name]) or "none of them"
        raise ValueError(f"--{unread[0]} does not apply to a {name} run (it reads {reads})")
    nbest = beam if nbest is None else nbest
    if not 1 <= nbest <= beam:
        raise ValueError(f"--nbest must be from 1 to --beam={beam}, got {nbest}")
    if top < 1 or batch_size < 1 or length < 0 or not temperature >= 0:
        raise ValueError("--top and --batch_size must be >= 1, --length and --temperature >= 0")
    net = tasks.model(config, record)
    params = load.load_state(workdir, config, net, checkpoint=checkpoint).state.params
    options = dict(top=top, beam=beam, nbest=nbest, length_penalty=length_penalty,
                   length=length, temperature=temperature, seed=seed)
    return PREDICTORS[name](config, record, net, params, list(inputs), options, batch_size)


def batched(fn: Callable, params, rows: list[dict], batch_size: int) -> list:
    """`fn(params, batch)` over `rows` (dicts of equal-shaped host arrays) in batches of
    `batch_size` (the last one filled up with copies of its first row), compiled once; each
    row's slice of the outputs."""
    jitted, out = jax.jit(fn), []
    size = min(batch_size, len(rows))
    progress = clock.Progress("predicting", len(rows), "inputs")
    for start in range(0, len(rows), size):
        progress.done(start)
        chunk = rows[start:start + size]
        full = chunk + [chunk[0]] * (size - len(chunk))
        result = jax.device_get(jitted(params, {k: np.stack([r[k] for r in full])
                                                for k in chunk[0]}))
        out += [jax.tree_util.tree_map(lambda a, i=i: a[i], result) for i in range(len(chunk))]
    return out


# ----------------------------------------------------------------------------- by task


def _language_model(config, record, net, params, inputs, o, batch_size):
    del config, batch_size
    vocab, out = lm.vocab(record), []
    for i, prime in enumerate(inputs):
        tokens = lm.generate(net, params, lm.encode_prime(vocab, prime), o["length"],
                             temperature=o["temperature"],
                             key=jax.random.fold_in(jax.random.key(o["seed"]), i))
        out.append({"input": prime, "continuation": data.to_text(vocab, np.asarray(tokens))})
    return out


def _text_rows(record, texts) -> list[dict]:
    vocab, T = lm.vocab(record), record["length"]
    cut = sum(len(text) > T for text in texts)
    if cut:
        logging.warning("%d input(s) cut to the %d characters the run was trained on", cut, T)
    rows = []
    for text in texts:
        ids = data.encode(vocab, text[:T])
        rows.append({"inputs": np.pad(ids, (0, T - len(ids))).astype(np.int32),
                     "lengths": np.int32(max(len(ids), 1))})
    return rows


def _classify(config, record, net, params, inputs, o, batch_size):
    def fn(p, b):
        _, out = net.apply(p, None, b["inputs"], lengths=b["lengths"])
        return out[:, 0] if config.task.name == "regress" else jax.nn.softmax(out, -1)

    outputs = batched(fn, params, _text_rows(record, inputs), batch_size)
    if config.task.name == "regress":
        return [{"input": x, "value": float(v)} for x, v in zip(inputs, outputs)]
    labels, out = record["labels"], []
    for text, probs in zip(inputs, outputs):
        order = np.argsort(-probs, kind="stable")[:o["top"]]
        out.append({"input": text, "label": labels[order[0]],
                    "probabilities": {labels[i]: float(probs[i]) for i in order}})
    return out


def _sequences(config, record, net, params, inputs, o, batch_size):
    sources = [seq2seq.encode_input(config, record, text) for text in inputs]
    longest = max(len(s) for s in sources)
    rows = [{"source": np.pad(s, [(0, longest - len(s))] + [(0, 0)] * (s.ndim - 1)),
             "source_lengths": np.int32(len(s) if s.dtype != np.int32 else max(len(s) - 1, 1))}
            for s in sources]
    K = o["beam"]

    def fn(p, b):
        carry = net.start(p, b["source"], b["source_lengths"])
        start = jnp.full((b["source"].shape[0],), record["start"], jnp.int32)
        step = seq2seq.step_fn(net, p, jnp.repeat(b["source"], K, axis=0))
        return decode.beam_search(step, carry, start, beam_size=K, max_len=record["max_len"],
                                  end_token=seq2seq.EOS, length_penalty=o["length_penalty"])

    out = []
    for text, (tokens, scores) in zip(inputs, batched(fn, params, rows, batch_size)):
        out.append({"input": text, "hypotheses": [
            {"output": seq2seq.detokenize(record, tokens[k]), "score": float(scores[k])}
            for k in range(o["nbest"]) if np.isfinite(scores[k])]})
    return out


def _synthetic_rows(config, record, inputs) -> list[dict]:
    name, T = config.task.name, record["length"]
    width = T + 2 * synthetic.COPY_LENGTH if name == "copy" else T
    rows = []
    for text in inputs:
        try:
            if name == "adding":
                x = np.asarray(json.loads(text), np.float32)
                ok = x.shape == (T, 2)
            else:
                x = np.asarray([int(c) for c in text.strip()], np.int32)
                ok = len(x) == width and x.max() < (10 if name == "copy" else 2)
        except ValueError:
            ok = False
        if not ok:
            form = {"adding": f"a JSON list of {T} [value, marker] pairs",
                    "parity": f"a string of {T} bits (0 or 1)",
                    "copy": f"a string of {width} digits 0-9"}[name]
            raise ValueError(f"a {name} run (trained at {'delay' if name == 'copy' else 'length'}"
                             f" {T}) predicts from {form}; got {text[:60]!r}")
        rows.append({"inputs": x})
    return rows


def _synthetic(config, record, net, params, inputs, o, batch_size):
    del o
    name, per_step = config.task.name, synthetic.per_step(config)

    def fn(p, b):
        n, T = b["inputs"].shape[:2]
        _, out = net.apply(p, None, b["inputs"], **({} if per_step else
                                                     {"lengths": jnp.full((n,), T)}))
        return out[..., 0] if name == "adding" else jax.nn.softmax(out, -1)

    out = []
    for text, y in zip(inputs, batched(fn, params, _synthetic_rows(config, record, inputs),
                                       batch_size)):
        if name == "adding":
            out.append({"input": text, "value": float(y)})
        elif not per_step:
            out.append({"input": text, "parity": int(np.argmax(y)), "probability": float(y.max())})
        else:
            steps = "".join(str(int(c)) for c in np.argmax(y, -1))
            key = "parities" if name == "parity" else "output"
            out.append({"input": text, key: steps, **({"recall": steps[-synthetic.COPY_LENGTH:]}
                                                      if name == "copy" else {})})
    return out


PREDICTORS = {"lm": _language_model, "classify": _classify, "regress": _classify,
              "seq2seq": _sequences, "vec2seq": _sequences, "adding": _synthetic,
              "parity": _synthetic, "copy": _synthetic}


# ----------------------------------------------------------------------------- output


def as_text(prediction: dict) -> str:
    """One prediction for a terminal."""
    shown = {k: v for k, v in prediction.items() if k != "input"}
    if "hypotheses" in shown:
        return f"{prediction['input']}\n" + "\n".join(
            f"  {h['score']:9.4f}  {h['output']!r}" for h in shown["hypotheses"])
    if "probabilities" in shown:
        return f"{shown['label']}\t" + "  ".join(
            f"{label} {p:.3f}" for label, p in shown["probabilities"].items()) + \
            f"\t{prediction['input']}"
    if "continuation" in shown:
        return prediction["input"] + shown["continuation"]
    return "\t".join(str(v) for v in shown.values()) + f"\t{prediction['input']}"


def as_csv(predictions: list[dict]) -> str:
    """One row per prediction (per hypothesis for seq2seq); nested values as JSON."""
    rows = []
    for p in predictions:
        for h in p.get("hypotheses") or [{}]:
            row = {k: v for k, v in p.items() if k != "hypotheses"}
            rows.append({**row, **{k: json.dumps(v) if isinstance(v, dict) else v
                                   for k, v in {**row, **h}.items() if k != "input"}})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for r in rows for k in r)),
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main(argv):
    del argv
    from absl import flags

    from rnnlab import compile_cache
    from rnnlab.run import checkpoint as checkpoint_lib
    from rnnlab.run import storage

    checkpoint_lib.quiet_orbax_logs()
    compile_cache.enable()
    F = flags.FLAGS
    try:
        if (F.input is None) == (F.inputs is None):
            raise ValueError("pass one of --input=TEXT or --inputs=FILE (one input a line)")
        lines = ([F.input] if F.input is not None
                 else open(F.inputs, encoding="utf-8").read().splitlines())
        inputs = [line for line in lines if line]
        if len(inputs) < len(lines):
            logging.warning("%s: %d blank line(s) skipped; the outputs follow the %d others",
                            F.inputs, len(lines) - len(inputs), len(inputs))
        if not inputs:
            raise ValueError(f"{F.inputs} has no inputs (one a line)")
        if F.output and not F.output.endswith((".jsonl", ".csv")):
            raise ValueError(f"--output must end in .jsonl or .csv, got {F.output!r}")
        predictions = predict(F.workdir, inputs, checkpoint=F.checkpoint, top=F.top,
                              beam=F.beam, nbest=F.nbest, length_penalty=F.length_penalty,
                              length=F.length, temperature=F.temperature, seed=F.seed,
                              batch_size=F.batch_size, given=tuple(
                                  o for o in ("top", "beam", "nbest", "length_penalty",
                                              "length", "temperature", "seed") if F[o].present))
    except (ValueError, FileNotFoundError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if not F.output:
        print("\n".join(as_text(p) for p in predictions))
        return
    text = (as_csv(predictions) if F.output.endswith(".csv")
            else "".join(json.dumps(p) + "\n" for p in predictions))
    storage.write_atomic(storage.path(F.output), text)
    logging.info("wrote %d predictions to %s", len(predictions), F.output)


if __name__ == "__main__":
    from absl import flags

    flags.DEFINE_string("workdir", None, "The run directory to predict with.", required=True)
    flags.DEFINE_string("input", None, "One input (what it is depends on the task: --help).")
    flags.DEFINE_string("inputs", None, "A file of inputs, one a line.")
    flags.DEFINE_string("output", None, "Write the predictions to FILE.jsonl or FILE.csv.")
    flags.DEFINE_enum("checkpoint", "best", ["best", "last"], "Which checkpoint.")
    flags.DEFINE_integer("top", 3, "classify: the labels shown with their probabilities.")
    flags.DEFINE_integer("beam", 1, "seq2seq/vec2seq: the beam size (1: greedy).")
    flags.DEFINE_integer("nbest", None, "seq2seq/vec2seq: the outputs shown (default: --beam).")
    flags.DEFINE_float("length_penalty", 0.0, "seq2seq/vec2seq: GNMT's alpha.")
    flags.DEFINE_integer("length", 200, "lm: characters to generate after each prime.")
    flags.DEFINE_float("temperature", 0.8, "lm: softmax temperature (0: argmax).")
    flags.DEFINE_integer("seed", 0, "lm: the sampling seed.")
    flags.DEFINE_integer("batch_size", 32, "Inputs per compiled batch.")
    from rnnlab import overrides

    overrides.run(main)
