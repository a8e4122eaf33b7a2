"""The domain: findings, incidents (grouping, lifecycle) and what is said about them. Pure
data and functions over it; imports only ``paytriage.core``."""
