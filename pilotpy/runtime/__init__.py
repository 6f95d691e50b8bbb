"""Process plumbing any layer may use: metric primitives, what sources report about
themselves, task lifecycle, memory tuning. Imports nothing else of pilotpy."""
