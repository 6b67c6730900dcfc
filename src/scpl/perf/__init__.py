"""Performance models: emulated device time, op-cost measurement, the schedule simulator, stage
balancing and soak runs."""
