"""Programs that run in the pods the operator creates."""
