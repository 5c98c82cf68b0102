"""Analytics: the help desk's memory of what happened, and the numbers behind its monthly
improvement."""
