"""The stated limits on every input the command line accepts.

Inputs beyond these are refused at the boundary (exit 2, one line naming the limit) rather than
allowed to exhaust memory or time inside the model; docs/CONTRACT.md and the README list them."""

# Bytes of one input file (trace, scenario, configuration, telemetry).
MAX_INPUT_BYTES = 16 * 1024 * 1024
# Nesting of arrays/objects/tables in any input document; a trace needs about 8.
MAX_NESTING = 32
# Decimal digits of any integer literal (ITF #bigint strings too): the spec's counters and
# 64-bit timestamps fit; a 5,000-digit number is a mistake, not a configuration.
MAX_INT_DIGITS = 20
# Blocks in a pool, a claim's footprint or a request's need (16M tokens at 16 tokens a block).
MAX_BLOCKS = 1_000_000
# Claim slots and request slots of one configuration (the spec's state space is exponential
# in them; the checker's default is 3 and 3).
MAX_SLOTS = 8
# Owners, cache identities and durations are small labels or logical-clock spans.
MAX_LABEL = 1_000
MAX_DURATION = 1_000_000
# States in one ITF trace; events (lines) in one telemetry file.
MAX_TRACE_STATES = 100_000
MAX_EVENTS = 1_000_000
