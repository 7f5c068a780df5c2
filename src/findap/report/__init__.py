"""The `report` stage: the run's leaderboard, FinCap view, costs and plots (built by findap.eval.report)."""
