"""Insights and alerts: daily metrics, anomaly findings and their explanations, alert rules and channels, OpenLineage events."""
