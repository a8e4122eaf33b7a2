"""The running service: the composition root (``compose``) that builds everything from the
settings, the service (``service``) and its health and metrics endpoint (``server``)."""
