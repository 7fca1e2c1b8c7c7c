"""Example pyllmd plugins: `prefer-pod-scorer` (EPP), `queue-step` (autoscaler analyzer) and
`linear-load` (simulator latency model). See the README for how each is used."""
