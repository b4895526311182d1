"""The modelport BentoML service (``service.service:ModelPort``)."""
