"""`python -m cdp_ingest.webhooks serve|batch`: the same as `cdp webhooks …`, without loading Dagster."""

import sys

from cdp_ingest.webhooks.cli import main

sys.exit(main())
