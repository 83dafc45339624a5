"""The EdgeModel runtime: MQTT in, predictions out, drift measured and reported."""
