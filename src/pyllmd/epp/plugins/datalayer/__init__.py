"""Data-layer plugins: where endpoint metrics come from and how they are read."""
