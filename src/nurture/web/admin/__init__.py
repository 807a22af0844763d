"""The admin pages under /admin: sign-in, sequences with timelines, previews and test sends, results
and deliveries. router.py assembles them; each area is one module."""
