"""The `kvclaims` command.  Each subcommand lives in its own module and is registered here
as "module:function" with a one-line description; the function takes the remaining argv and
returns an exit code.

Exit codes, as the model checkers use them: 0 everything as expected, 12 an unexpected verdict
or violation, 2 bad usage or bad input (one line on stderr, no traceback), 255 internal error.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from kvclaims.errors import (EXIT_INTERNAL, EXIT_OK, EXIT_UNEXPECTED,  # noqa: F401
                             EXIT_USAGE, UsageError)

SUBCOMMANDS = {
    "check": ("kvclaims.checker.cli_check:main",
              "prove or refute every (policy, obligation) with z3 and compare with the manifest"),
    "explore": ("kvclaims.checker.cli_explore:main",
                "explore every state of one bounded configuration and write counterexamples"),
    "litmus": ("kvclaims.checker.cli_litmus:litmus",
               "run the litmus suite (L1-L7, C1) against a target"),
    "sweep": ("kvclaims.checker.cli_litmus:sweep",
              "sweep the 60-resident / 70-active scenario over usable pool sizes"),
    "refine": ("kvclaims.refinement.cli_refine:main",
               "replay traces on a target and check every step against the spec"),
    "observe": ("kvclaims.model.cli:observe",
                "reconstruct claims, conflicts and outcomes from a telemetry file alone"),
    "validate": ("kvclaims.checker.cli_validate:main",
                 "validate a runtime's telemetry trace against the spec, per obligation"),
    "conform": ("kvclaims.checker.conform.cli:main",
                "classify each (runtime, protection mode) of runtime descriptors, failing "
                "closed"),
    "load": ("kvclaims.refinement.load:main",
             "drive the patched vLLM engine with random multi-tenant load, observer as oracle"),
}

EPILOG = ("exit codes: 0 as expected, 12 an unexpected verdict or violation, 2 bad usage or "
          "bad input (one line on stderr), 255 internal error.  "
          "`kvclaims COMMAND --help` describes a command's options.")


def version() -> str:
    try:
        from importlib.metadata import version as dist_version
        return dist_version("kvclaims")
    except Exception:  # running from a source tree that was never installed
        return "unknown"


class _TopParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    p = _TopParser(prog="kvclaims", epilog=EPILOG,
                   description="Formal model, model-checked specification and refinement "
                               "harness for the resident KV claim contract (docs/CONTRACT.md).")
    p.add_argument("--version", action="version", version=f"kvclaims {version()}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, summary) in SUBCOMMANDS.items():
        # the subcommand's own parser handles its options, --help included
        sub.add_parser(name, help=summary, add_help=False)
    return p


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(parser().format_usage().strip(), file=sys.stderr)
        return EXIT_USAGE
    name = argv[0]
    if name not in SUBCOMMANDS:
        try:
            parser().parse_args(argv)   # --help and --version exit here with code 0
        except UsageError as e:
            print(f"kvclaims: {_one_line(e)}", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_USAGE
    mod, fn = SUBCOMMANDS[name][0].split(":")
    try:
        return getattr(importlib.import_module(mod), fn)(argv[1:])
    except UsageError as e:
        print(f"kvclaims {name}: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except (MemoryError, RecursionError) as e:
        # a resource limit the boundary checks did not foresee: still bad input, not a crash
        print(f"kvclaims {name}: input too large for this machine ({type(e).__name__}); "
              f"use a smaller configuration or bound", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception:  # an internal error is not a verdict
        traceback.print_exc()
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
