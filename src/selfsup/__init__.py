"""selfsup: a self-supervised learning lab driven by DVC and recorded in MLflow."""
