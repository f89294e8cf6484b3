"""The GitOps logic on the MLflow registry: the card, registry conventions, the gate's
statistics and decision, the verdict and its signature, the report, promotion, drift and
GitHub.

`gitops` builds on `stages` (to recompute the evaluation rows and score models) and
loads models through `modelio`; the jobs and commands that call it live in `jobs` and
`cli` (docs/architecture.md has the table of who may import whom).
"""
