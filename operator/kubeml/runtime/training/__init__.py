"""The pieces of the training program (``kubeml.runtime.train``).

Pure parts (features, estimator, search, metrics, target, signature) take frames
and specs and return values; the I/O parts (dataset, champion, artifacts) talk to
S3 through ``kubeml.storage``.
"""
