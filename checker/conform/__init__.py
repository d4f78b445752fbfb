"""Conformance profiles: the fail-closed lowering checker (`kvclaims conform`).

A runtime descriptor (TOML) says what each contract element is lowered to on one runtime
version and what evidence backs each obligation; the checker classifies every (runtime,
protection mode) pair into one of the six verdict classes of docs/CONTRACT.md section 9,
failing closed: whatever is not backed by evidence that still checks out is unknown or
rejected, never conformant."""
