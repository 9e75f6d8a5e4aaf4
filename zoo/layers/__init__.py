"""Building blocks and helpers shared by two or more model families."""
