"""The CDP asset graph: one module per layer, and the `Definitions` in `definitions.py`."""
