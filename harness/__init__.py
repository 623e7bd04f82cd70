"""llm-harness: benchmark real LLM inference engines with honest numbers."""

__version__ = "0.1.0"
