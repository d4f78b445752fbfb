"""Exit codes, as the model checkers use them, and the one exception that means bad input."""

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_INTERNAL = 0, 12, 2, 255


class UsageError(Exception):
    """Bad usage or bad input: reported as one line on stderr, exit 2."""
