"""Where the lake's Delta tables live: every path below the lake's base URI that more than one
module needs is built here, and only here."""

CURATED = "curated"
DEAD_LETTERS = f"{CURATED}/_dead_letters"
NODES, EDGES = "identity/nodes", "identity/edges"
MAP, MERGES, EXCLUSIONS = "identity/customer_ids", "identity/merges", "identity/exclusions"
PROFILES, HISTORY = "profiles/customer_profiles", "profiles/profile_history"
PREDICTIONS = "predictions/customer_scores"


def curated_path(table: str) -> str:
    """The lake path of curated `table` (a Delta table partitioned by event_date)."""
    return f"{CURATED}/{table}"


def dead_letter_path(table: str) -> str:
    """The lake path of curated `table`'s dead letters: a Delta table of its own, so no asset
    writes a table another one writes (a shared one cost every asset a rebuild of its snapshot
    after each other asset's commit, and concurrent writers would conflict)."""
    return f"{DEAD_LETTERS}/{table}"
