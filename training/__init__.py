"""Training: data in, an evaluated, versioned BentoML model out."""
