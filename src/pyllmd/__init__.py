"""pyllmd: the llm-d autoscaling stack (simulator, endpoint picker, autoscaler) in Python."""

__version__ = "0.1.0"
