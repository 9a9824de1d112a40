"""Aggregates shared by the console and the JSON API: usage reports and rate-limit status."""
