"""The JSON schemas, shipped as package data of ``modelsync.schemas``."""
