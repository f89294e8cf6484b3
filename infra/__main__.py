"""The Pulumi program of the cloud stack; see docs/infra.md."""

from mlops_stack.program import main

main()
