"""Test doubles for components that cannot run here (Ollama)."""

from __future__ import annotations

from tests.doubles.ollama_double import FakeModel, Fault, OllamaDouble

__all__ = ["FakeModel", "Fault", "OllamaDouble"]
