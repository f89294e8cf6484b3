"""The cloud stack as Pulumi component resources: one module per concern, wired in program.py."""
