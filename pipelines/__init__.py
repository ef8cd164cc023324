"""Pipelines: stages (pure functions on assets) and the chains that join them."""
