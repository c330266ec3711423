"""The CDP asset graph: one module per layer, and the `Definitions` in `definitions.py`."""

import warnings

from dagster import BetaWarning

# Single-run backfill policies are how historic mode runs Spark once per range; they are marked
# beta, and the warning would otherwise repeat for every asset on every load.
warnings.filterwarnings("ignore", category=BetaWarning)
