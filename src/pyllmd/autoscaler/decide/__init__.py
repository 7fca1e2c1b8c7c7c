"""The autoscaler's decision core: analyzers, optimizer, limiter, enforcement, status decisions.

Plain functions over plain data (time passed in); imports no server, network or
metrics library and none of the autoscaler's shells (an import-linter contract).
"""
