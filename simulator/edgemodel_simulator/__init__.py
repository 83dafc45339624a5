"""The EdgeModel sensor simulator (``edgemodel-simulator``): plant-floor devices over MQTT, drift on command.

:mod:`edgemodel_simulator.sensors` holds the pure generator, the CSV history and replay,
the thin MQTT publisher and the command line. ``examples/simulator.yaml`` runs it as a Pod.
"""
