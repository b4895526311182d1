"""modelport: train, serve and deploy machine-learning models on Kubernetes."""

__version__ = "0.1.0"
