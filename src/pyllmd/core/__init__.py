"""Helpers shared by every part: flags, clock, errors, hashing. Imports no part."""
