"""Checking what a search found: `task check` (`checks`), `discover verify` (`verify`, with `comparison`,
`ablation` and `refit`), `discover simplify` (`simplify`, `rewrite`), reports (`report`, `figures`) and read-only
views of a run (`inspect_runs`)."""
