"""Kubernetes I/O: clients, server-side apply, status writes. No decisions here."""
