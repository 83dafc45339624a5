"""The EdgeModel trainer: retrain, gate, register, promote and roll back in MLflow."""
