"""A Jordan network (output recurrence, teacher forcing) on text8: the tutorial's "Arch 2".

    python -m rnnlab.main --config=configs/jordan_text8.py --workdir=runs/jordan_text8

The recurrent input is the previous OUTPUT: in training the previous target (teacher
forcing); the model's own sample when generating text. Training settings as elman_text8 (the
classic text8 tutorial: T=10, SGD lr 10 with staircase decay, clip 1.25).
Expected runtime: like elman_text8. Expected result: not measured yet with rnnlab on full
text8. With teacher forcing and the default `model.jordan_mu=0`, the fed-back previous target
is the current input character, so the model sees one character: a bigram model (about 3.3
bpc on text8's tail in experiments/elman_vs_jordan, where Elman reached 2.3); set
`--config.model.jordan_mu=0.5` (say) for a decaying memory of the previous characters.
`:smoke`: tiny, offline corpus, well under a minute.
"""

from configs import base, elman_text8


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = elman_text8.get_config()
    c.model.cell = "jordan"
    c.model.jordan_feedback = "teacher"
    if arg == "smoke":
        base.smoke(c)
    return c
