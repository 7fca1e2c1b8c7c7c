"""The P/D routing sidecar (`pyllmd pd-sidecar`): a deployable component importing only core."""
