"""Protobuf wire and JSON helpers shared by translation and the xDS layer. Imports nothing
else of pilotpy."""
