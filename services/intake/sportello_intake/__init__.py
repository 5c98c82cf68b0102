"""Intake: where requests are collected and where the ticket record lives."""
