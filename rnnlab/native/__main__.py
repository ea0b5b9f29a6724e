r"""Whether the native CPU path is in use here, and if not why:

    python -m rnnlab.native

Builds it on first call (a few seconds), then prints one line and exits 0 when it is in use,
1 when it is not.
"""

import sys

from rnnlab import native

if __name__ == "__main__":
    ok = native.available()
    print(("in use: " if ok else "not in use: ") + native.status()[1])
    sys.exit(0 if ok else 1)
