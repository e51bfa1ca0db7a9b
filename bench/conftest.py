"""The benchmark suite: `pytest bench/ --benchmark-only` (full shapes) or
`pytest bench/ --benchmark-disable` (each case once, at the quick shapes, as CI does)."""
