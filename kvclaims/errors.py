"""Exit codes, as the model checkers use them, and the one exception that means bad input."""

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_INTERNAL = 0, 12, 2, 255


class UsageError(Exception):
    """Bad usage or bad input: reported as one line on stderr, exit 2."""


def shown(value, width: int = 40) -> str:
    """A value as an error message quotes it: repr, cut to `width` characters, so a huge or
    multi-line input cannot turn one error line into many."""
    text = " ".join(repr(value).split())
    return text if len(text) <= width else text[:width - 3] + "..."
