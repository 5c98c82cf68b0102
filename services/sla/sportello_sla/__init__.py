"""SLA: time limits of every ticket, warnings before a breach, and the breach itself."""
