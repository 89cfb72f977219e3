"""Pure decisions: (object, observed children) -> one Outcome.

Nothing here talks to the API server, S3 or the operator framework; the controllers
observe, call these functions, and the driver carries out what they return.
"""
