"""The endpoint picker (EPP): an Envoy ext_proc service that chooses the model-server pod."""
