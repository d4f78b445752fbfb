"""The `kvclaims` command.  Each subcommand lives in its own module and is registered here
as "module:function"; the function takes the remaining argv and returns an exit code.

Exit codes, as the model checkers use them: 0 everything as expected, 12 an unexpected verdict
or violation, 2 bad usage or bad input (one line on stderr, no traceback), 255 internal error.
"""
from __future__ import annotations

import importlib
import sys
import traceback

SUBCOMMANDS = {
    "check": "kvclaims.checker.cli_check:main",
    "refine": "kvclaims.refinement.cli_refine:main",
    "observe": "kvclaims.model.cli:observe",
    "explore": "kvclaims.checker.cli_explore:main",
    "litmus": "kvclaims.checker.cli_litmus:litmus",
    "sweep": "kvclaims.checker.cli_litmus:sweep",
    "load": "kvclaims.refinement.load:main",
    "validate": "kvclaims.checker.cli_validate:main",
    "conform": "kvclaims.checker.conform.cli:main",
}

from kvclaims.errors import (EXIT_INTERNAL, EXIT_OK, EXIT_UNEXPECTED,  # noqa: F401
                             EXIT_USAGE, UsageError)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: kvclaims {" + ",".join(SUBCOMMANDS) + "} [options]")
        return EXIT_OK if argv else EXIT_USAGE
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"kvclaims: unknown command '{name}' (choose from {', '.join(SUBCOMMANDS)})",
              file=sys.stderr)
        return EXIT_USAGE
    mod, fn = SUBCOMMANDS[name].split(":")
    try:
        return getattr(importlib.import_module(mod), fn)(rest)
    except UsageError as e:
        print(f"kvclaims {name}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception:  # an internal error is not a verdict
        traceback.print_exc()
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
