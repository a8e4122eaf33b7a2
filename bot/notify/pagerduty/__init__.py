"""PagerDuty: Events API v2 (``events``) and the outbox sender that pages (``sender``)."""
