"""Moving Production by hand in tests, as an admin with the registry's write rights can.

Not a promotion (no gate): the version's files as they are now are recorded as its
manifest, then the alias moves. Tests of the server use it to stage versions; tests of
the trust chain use it to play a compromised registry write.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from pipeline.errors import RegistryError
from pipeline.gitops import registry


def move_production(client: MlflowClient, name: str, version: str, *,
                    tracking_uri: str) -> None:
    try:
        manifest = registry.version_manifest(name, version, tracking_uri=tracking_uri)
    except RegistryError:  # files that cannot even be downloaded: nothing to record
        manifest = {}
    registry.set_production(client, name, version, manifest=manifest)
