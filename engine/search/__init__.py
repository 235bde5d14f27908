"""The search: a run's wiring (`session`), its loop (`loop`), the task -> sandbox bridge (`evaluation`), the
seed-score guard (`seed_check`) and the live display (`progress`)."""
