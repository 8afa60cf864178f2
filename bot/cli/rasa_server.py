"""``rasa run`` with its secret taken from the environment, never the command line.

    RASA_AUTH_TOKEN=… python -m bot.cli.rasa_server --model models/njupt.tar.gz …

Arguments on a command line are visible to every local user (``ps``), and a
token starting with ``-`` would be read as an option. Here the token is read
from ``RASA_AUTH_TOKEN`` and handed to Rasa's own argument parser inside the
process (``--auth-token=…``, one argument), which also turns on Rasa's HTTP
API; without the variable the API stays off. ``bot.plugins.speedups`` is
installed before Rasa starts, and ``bot.plugins.memory`` gives back the library code
the server mapped but does not run once the model is loaded.

JAX is never imported: TensorFlow's TFLite converter imports it when it is
installed (TensorFlow 2.12 requires it), for a conversion Rasa never does, and
it costs the server about 100 MB of memory.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    token = os.environ.pop("RASA_AUTH_TOKEN", "")
    arguments = ["run", *sys.argv[1:]]
    if token:
        arguments += ["--enable-api", f"--auth-token={token}"]
    sys.argv = ["rasa", *arguments]
    sys.modules.setdefault("jax", None)  # `import jax` raises ImportError, which TensorFlow expects
    from rasa.__main__ import main as rasa_main

    from bot.plugins import memory, speedups

    speedups.install()
    memory.install()
    rasa_main()


if __name__ == "__main__":
    main()
