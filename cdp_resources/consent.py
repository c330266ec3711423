"""The purposes a person gives or refuses consent for, shared by curation (the app's consent
categories), the sample generator and activation (a destination serves one purpose)."""

PURPOSES = ("email_marketing", "sms_marketing", "advertising")
STATUSES = ("granted", "denied", "unknown")
