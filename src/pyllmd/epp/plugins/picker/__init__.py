"""Picker plugins, one module per upstream type."""
