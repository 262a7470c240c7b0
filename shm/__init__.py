"""The wire between hftd processes: record dtypes, the market ring, the order channels."""
