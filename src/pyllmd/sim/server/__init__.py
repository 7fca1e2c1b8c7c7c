"""The simulator's imperative shell: the completion flow (`serving`), the HTTP and gRPC
surfaces, the `vllm:*` metrics, the ZMQ KV-event publisher, TLS and the port
multiplexer. `pyllmd.sim.run` assembles them around the engine."""
