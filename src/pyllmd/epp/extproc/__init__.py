"""The ext_proc shell: the gRPC servicer and its wire format, health, TLS, the response lifecycle,
and the adapters that present the decision core to the servicer."""
