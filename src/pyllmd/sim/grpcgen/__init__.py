"""Generated gRPC code of the vLLM engine API (`make protos` regenerates it from the .proto)."""
