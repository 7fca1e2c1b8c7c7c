"""The scheduling framework: plugin contracts, the request/endpoint types, the profile runner."""
