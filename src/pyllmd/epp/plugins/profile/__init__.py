"""Profile plugins, one module per upstream type."""
