"""Routing: who works on a ticket, and moving it up the support levels."""
