"""Reporting: tables, plots and timelines from measured runs."""
