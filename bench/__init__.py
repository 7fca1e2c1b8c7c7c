"""`make bench`: figures of the simulator, the autoscaler and the endpoint picker (EPP).

Each figure is a ratio against a baseline measured in the same run on the same
machine, so results from different machines can be compared. Run it as
``python -m bench``; see docs/developer-guide/benchmarks.md for the method.
"""
