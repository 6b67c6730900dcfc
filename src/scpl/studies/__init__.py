"""Studies: each is a loop over suites of runs that writes tables (bench, epoch-time, profile,
experiment)."""
