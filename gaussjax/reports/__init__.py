"""Reports a person can open: report.md with embedded PNG plots, the raw numbers as JSON, and a
progress line. `plots` needs matplotlib (the `[plots]` extra) and imports it only when called, so
the library stays importable without it."""
