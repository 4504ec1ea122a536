"""Adapters that make a framework's agent runs tracked in runtrack (docs/integrations.md).

Each adapter is its own module, imported by name, so this package needs no framework:
``api.client.adapters.langchain`` (the ``langchain`` extra) and
``api.client.adapters.openai_agents`` (the ``openai-agents`` extra). They observe: a framework
decides itself what it calls again, so a run they record is tracked, not resumable.
"""
