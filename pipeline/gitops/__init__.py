"""The GitOps logic on the MLflow registry: the card, registry conventions, the gate's
statistics and decision, the verdict, the report, promotion, drift and GitHub.

`gitops` may import `stages` (to recompute the evaluation rows and score models) and
nothing else of ours but `errors`/`settings`; the commands that call it live in `cli`.
"""
