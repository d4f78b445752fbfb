"""Command-line option parsing shared by the subcommands: an argparse parser whose errors
are UsageError (one line, exit 2) and number types with stated bounds, so `--jobs 10**26`
or `--timeout nan` is refused before any work starts."""
from __future__ import annotations

import argparse
import math

from kvclaims.errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (kvclaims.cli prints it) instead of
    printing the usage block and exiting itself."""

    def error(self, message):
        raise UsageError(message)


def int_in(lo: int, hi: int):
    """An argparse type: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        t = text.strip()
        if not (t.isascii() and t.lstrip("+-").isdigit() and len(t) <= 20):
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer")
        v = int(t)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is out of range {lo}..{hi}")
        return v
    return parse


def float_in(lo: float, hi: float):
    """An argparse type: a finite number in [lo, hi] (nan and inf refused)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not math.isfinite(v) or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{text} is out of range {lo:g}..{hi:g}")
        return v
    return parse
