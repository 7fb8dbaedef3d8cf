"""``lsfa predict`` with every chunk slowed down, so a test can SIGKILL the process part-way at a moment it picks.

    python tests/inference/slow_predict.py SECONDS predict ARGS...

Each chunk waits ``SECONDS`` before it is tagged; nothing else changes. The delay lives here, in the tests, and
reaches the run by replacing :func:`lsfa.inference.files.rendered_outputs` (what the streaming loop calls)."""

import sys
import time

from lsfa.cli import main
from lsfa.inference import files


def slowed(original, seconds: float):
    """``original`` after a pause."""

    def rendered_outputs(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)

    return rendered_outputs


if __name__ == "__main__":
    delay = float(sys.argv.pop(1))
    files.rendered_outputs = slowed(files.rendered_outputs, delay)
    sys.argv[0] = "lsfa"
    main()
