"""billsync for AI assistants: ``billsync mcp`` serves read-only tools over the Model Context
Protocol (``tools``: what each tool reads and answers; ``server``: the protocol, the API key).
docs/intelligence.md *The MCP server*."""
