"""Analytics' rules, pure: a ticket's facts from its events, what they add to each day's
aggregates, and the KPIs read back from those aggregates."""
