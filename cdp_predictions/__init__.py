"""Predictions per tenant: churn propensity and customer lifetime value, measured on held-out data."""
