"""What the ingestion edge and activation share: the dead-letter zone and the webhook signing schemes."""
