"""The local stack: runs the parts together as processes on one machine."""
