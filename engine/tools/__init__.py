"""Tools the model may call: the call parser, the tool loop, built-in tools,
permissions and MCP servers. Pure Python; knows no other engine domain (the loop
takes a backend's ``stream`` as a callable)."""
