"""What ships: the wheel, the image recipe, the layout (marked ``packaging``: subprocesses, network)."""
