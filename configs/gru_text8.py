"""The text8 LSTM run with a GRU in its place (same sizes, data and optimizer).

    python -m rnnlab.main --config=configs/gru_text8.py --workdir=runs/gru_text8

Expected runtime: a bit less than lstm_text8 (3 gates instead of 4). Expected result: not
measured yet with rnnlab; GRUs of this size are usually within a few hundredths of a bpc of
the LSTM on character modelling.
`:smoke`: tiny, offline corpus, well under a minute.
"""

from configs import base, lstm_text8


def get_config(arg=None):
    arg = base.variant(arg, "smoke")
    c = lstm_text8.get_config()
    c.model.cell = "gru"
    if arg == "smoke":
        base.smoke(c)
    return c
