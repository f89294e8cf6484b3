"""The stack's policy pack: `pulumi preview --policy-pack infra/policy` runs it."""

from pulumi_policy import PolicyPack
from rules import POLICIES

PolicyPack(name="mlops-security", policies=POLICIES)
