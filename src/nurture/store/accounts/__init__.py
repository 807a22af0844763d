"""AccountStore: a subscriber's own lifecycle as their pages drive it: signup and confirmation,
preferences, and their personal data (export, erasure, purge)."""
