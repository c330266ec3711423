"""Connected components in Spark with the large-star / small-star algorithm (Kiveris et al.,
"Connected Components in MapReduce and Beyond", SoCC 2014): O(log n) rounds of joins and
aggregations, the graph never leaves the cluster. Each round's edges are checkpointed
(`localCheckpoint`), so the plan does not grow with the number of rounds."""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

MAX_ROUNDS = 64


def _undirected(edges: DataFrame) -> DataFrame:
    return edges.union(edges.select(F.col("v").alias("u"), F.col("u").alias("v")))


def large_star(edges: DataFrame) -> DataFrame:
    """Each node's larger neighbours are re-pointed to the smallest of its neighbourhood (itself included)."""
    both = _undirected(edges)
    smallest = both.groupBy("u").agg(F.least(F.min("v"), F.first("u")).alias("m"))
    return (
        both.join(smallest, "u")
        .where(F.col("v") > F.col("u"))
        .select(F.col("v").alias("u"), F.col("m").alias("v"))
        .distinct()
    )


def small_star(edges: DataFrame) -> DataFrame:
    """Each node and its smaller neighbours are re-pointed to the smallest of them."""
    down = edges.select(F.greatest("u", "v").alias("u"), F.least("u", "v").alias("v")).where(F.col("u") != F.col("v"))
    smallest = down.groupBy("u").agg(F.min("v").alias("m"))
    moved = down.join(smallest, "u")
    return (
        moved.select(F.col("v").alias("u"), "m")
        .union(moved.select("u", "m"))
        .where(F.col("u") != F.col("m"))
        .select("u", F.col("m").alias("v"))
        .distinct()
    )


def _is_star_forest(edges: DataFrame) -> bool:
    """Every edge points from a leaf (u) to its component's smallest node (v), one edge per leaf (one Spark job)."""
    leaves = edges.groupBy("u").agg(F.count("*").alias("centres"))
    two_centres = leaves.where(F.col("centres") > 1).select("u")
    centre_is_leaf = edges.select(F.col("v").alias("u")).distinct().join(leaves.select("u"), "u")
    return two_centres.union(centre_is_leaf).isEmpty()


def connected_components(edges: DataFrame) -> tuple[DataFrame, int]:
    """(node, component) for every node of `edges` (columns u, v: bigint), component = the smallest node id
    of its component; and the number of rounds it took."""
    current = (
        edges.select(F.least("u", "v").alias("u"), F.greatest("u", "v").alias("v"))
        .where(F.col("u") != F.col("v"))
        .distinct()
        .localCheckpoint()
    )
    isolated_pairs = edges.where(F.col("u") == F.col("v")).select(F.col("u").alias("node"))
    for rounds in range(1, MAX_ROUNDS + 1):  # noqa: B007 (returned: the rounds it took)
        current = small_star(large_star(current)).localCheckpoint()
        if _is_star_forest(current):
            break
    else:
        raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")
    labels = current.select(F.col("u").alias("node"), F.col("v").alias("component"))
    centres = current.select(F.col("v").alias("node"), F.col("v").alias("component")).distinct()
    alone = (
        isolated_pairs.join(labels, "node", "left_anti")
        .join(centres, "node", "left_anti")
        .select("node", F.col("node").alias("component"))
    )
    return labels.union(centres).union(alone).distinct(), rounds
