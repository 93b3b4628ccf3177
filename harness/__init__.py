"""Evaluation-driven comparison harness for adapting language models."""
