"""The schema every run config starts from: `rnnlab.config`, at the path run configs import.

Run configs do `from configs import base` and call `base.get_config()`, `base.variant(arg,
...)`, `base.smoke(c)` and `base.placeholder(type)`; each key, its default and its meaning are
declared once, in `rnnlab/config.py`.
"""

from rnnlab import config

get_config = config.get_config
variant = config.variant
smoke = config.smoke
placeholder = config.placeholder
