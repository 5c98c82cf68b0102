"""Sportello gateway: the one door for agents, coordinators, vendors, admins and SREs."""
