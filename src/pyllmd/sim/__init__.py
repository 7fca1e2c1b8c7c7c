"""The inference simulator: a vLLM server without a GPU (drop-in for llm-d-inference-sim)."""
