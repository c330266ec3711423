"""Privacy: forgetting a person (requests, erasure in every zone, suppression, receipts) and retention."""
