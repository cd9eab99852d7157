"""Adapters that turn MCP tool calls and CLI commands into engine events."""
