"""Scorer plugins, one module per upstream type."""
