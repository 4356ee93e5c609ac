"""What every command-line script shares: one-line errors and `--help` that shows the defaults.

    from pomlab.cli import HelpFormatter, run

    def main(argv=None):
        p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
        ...

    if __name__ == "__main__":
        run(main)

`run(main)` calls `main()`; bad input (ValueError, OSError such as FileNotFoundError,
ImportError for a missing extra, RuntimeError raised by pomlab) prints one line,
`error: <message>`, on stderr and exits with status 2, like argparse's own errors. `--debug`
anywhere on the command line (removed before `main` parses it) or POMLAB_DEBUG=1 shows the full
traceback instead. Ctrl-C exits with status 130 and one line. Any other exception is a bug and
keeps its traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NoReturn

# Errors that mean "the input or the environment is wrong", not "pomlab has a bug": their
# message is the whole story (pomlab's messages name the argument and what was expected).
USER_ERRORS = (ValueError, OSError, ImportError, RuntimeError)
DEBUG_FLAG = "--debug"
DEBUG_ENV = "POMLAB_DEBUG"
EXIT_USAGE = 2                # argparse's status for bad arguments
EXIT_INTERRUPTED = 130        # 128 + SIGINT, the shell convention


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the module docstring's layout and appends "(default: X)" to every option whose
    default is a value (not None, not a False flag) and whose help does not already say it."""

    def _format_action(self, action):
        if action.help is None and _shows_default(action):
            action.help = "default: %(default)s"
        return super()._format_action(action)

    def _get_help_string(self, action):
        text = action.help or ""
        if _shows_default(action) and "default" not in text.lower():
            text += " (default: %(default)s)"
        return text


def _shows_default(action: argparse.Action) -> bool:
    default = action.default
    return (bool(action.option_strings) and default is not argparse.SUPPRESS
            and default is not None and default is not False and default != [])


def debug_requested(argv: list[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(error: BaseException) -> str:
    """The message of an error on one line (multi-line messages joined with '; ')."""
    text = str(error).strip()
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])
    parts = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(parts) or type(error).__name__


def run(main: Callable[[], object]) -> NoReturn:
    """Run a script's main() and exit: an int it returns is the exit status (None: 0); user
    errors become `error: ...` and status 2 (see the module doc)."""
    debug = debug_requested()
    if DEBUG_FLAG in sys.argv[1:]:
        sys.argv = [sys.argv[0]] + [a for a in sys.argv[1:] if a != DEBUG_FLAG]
    try:
        status = main()
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted (rerun the same command to resume where a script supports it)",
              file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"error: {one_line(error)}  (--debug or {DEBUG_ENV}=1 shows the traceback)",
              file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)
