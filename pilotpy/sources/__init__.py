"""Sources publish objects into the store; they never call the translator or the server."""
