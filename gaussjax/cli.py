"""What every command-line launcher shares: quiet library logs, Ctrl-C as one line, the
persistent compilation cache and the measured XLA:CPU flags (runtime.py).

if __name__ == "__main__":
    cli.run(main)          # instead of absl's app.run(main)
"""

import sys

from absl import app, flags, logging

from gaussjax import runtime

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what shells report for Ctrl-C


def quiet_library_logs() -> None:
    """Shows only warnings and errors of JAX and Orbax (their INFO lines, such as "Unable to
    initialize backend 'tpu'", mean nothing to a user); `--verbosity=0` brings them back."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def run(main) -> None:
    """absl's app.run(main) with quiet library logs, the compilation cache on and the XLA:CPU
    flags of `runtime.set_cpu_xla_flags` (set before any backend starts); Ctrl-C prints one line
    (the interrupt's own message, e.g. how far a run got) and exits with 130 instead of a
    traceback."""

    def main_quietly(argv):
        quiet_library_logs()
        runtime.enable_compilation_cache()
        try:
            return main(argv)
        except KeyboardInterrupt as e:
            print(str(e) or "interrupted", file=sys.stderr, flush=True)
            sys.exit(INTERRUPTED_EXIT_CODE)

    runtime.set_cpu_xla_flags()
    app.run(main_quietly)
