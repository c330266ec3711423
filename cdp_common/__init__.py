"""What the ingestion edge and activation share: the dead-letter zone, the webhook signing schemes
and the rule for tenant, provider and stream names."""
