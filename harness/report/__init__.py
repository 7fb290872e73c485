"""Reports: the RunOutcome model and its writers."""
