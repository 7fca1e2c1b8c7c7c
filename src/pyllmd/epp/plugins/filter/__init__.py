"""Filter plugins, one module per upstream type."""
