"""Test doubles shipped for the test suite and the benchmarks (bench/); the product never uses them.

They live in the package, not under tests/, so that bench/ can use them without importing the test suite, and they
import nothing from pytest:

- `ollama_double`: `OllamaDouble`, a real HTTP server on 127.0.0.1 that stands in for Ollama's API (Ollama cannot be
  installed where the tests run);
- `fake_ollama`: writes an `ollama` executable whose `serve` runs that double, for the lifecycle tests that start
  Ollama;
- `openai_double`: `OpenAIDouble`, a real HTTP server that answers as llama.cpp's server, vLLM, Ollama's `/v1`,
  llama-cpp-python's server or LM Studio (none of them runs where the tests run);
- `scripted`: `ScriptedBackend`, an in-process Backend that answers from a queue, and `use_backend` to hand it to an
  Engine.
"""

from __future__ import annotations

__all__ = ["fake_ollama", "ollama_double", "openai_double", "scripted"]
