"""Policies: the YAML format (schema), loading with friendly errors, and planning."""
