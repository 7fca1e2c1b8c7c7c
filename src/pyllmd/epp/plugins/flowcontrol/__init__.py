"""Flow-control policy plugins (spec §8): declarable in the config's `plugins` list."""
