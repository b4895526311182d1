"""The modelport BentoML service (``service.service:ModelPort``)."""

import gc

# ``bentoml serve`` imports this package in both of its processes (supervisor, then
# worker) once BentoML itself is loaded. What is loaded so far stays for good: out of
# the collector's view with it, so the collections during the rest of the start (the
# service's imports, BentoML's app, the models) stop rescanning all of BentoML (~50 ms
# per full collection; ~0.15 s of a 1.9 s cold start).
gc.freeze()
