"""`pyllmd simulate`: a workload replayed in virtual time on the simulator's batch engine."""
