"""Pure decisions: (object, observed children) -> desired objects and next status.

Nothing here talks to Kubernetes, S3 or kopf; controllers gather the inputs,
call these functions, and apply what they return.
"""
