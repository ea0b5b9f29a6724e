"""A Jordan network (output recurrence, teacher forcing) on text8: the tutorial's "Arch 2".

    python -m rnnlab.main --config=configs/jordan_text8.py --workdir=runs/jordan_text8

The recurrent input is the previous OUTPUT: in training the previous target (teacher
forcing); the model's own sample when generating text. Training settings as elman_text8 (the
classic text8 tutorial: T=10, SGD lr 10 with staircase decay, clip 1.25).
Expected runtime: like elman_text8. Expected result: not measured yet with rnnlab on full
text8; with teacher forcing the fed-back previous target is the current input character, so
it should land near a one-layer Elman network of the same size.
`:smoke`: tiny, offline corpus, well under a minute.
"""

from configs import base, elman_text8


def get_config(arg=None):
    c = elman_text8.get_config()
    c.model.cell = "jordan"
    c.model.jordan_feedback = "teacher"
    if arg == "smoke":
        base.smoke(c)
    return c
