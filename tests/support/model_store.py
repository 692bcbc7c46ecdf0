"""What the model-store tests share: a private copy of the demo store (and edits to its
manifest), a classification request, and a stand-in classifier for the lazy model's state
tests."""
import json
import shutil
from pathlib import Path

from tests.support.fixtures import PNG_CARDIOMEGALY


def copy_store(demo_store: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the demo store (the `current` link is kept relative)."""
    root = tmp_path / "efs"
    shutil.copytree(demo_store, root, symlinks=True)
    return root


def current_dir(root: Path) -> Path:
    return root / "models" / "current"


def edit_manifest(root: Path, **changes) -> None:
    """Changes the served version's manifest.json in a copied store (top-level keys)."""
    path = current_dir(root) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def post_png(client):
    return client.http.post("/xray", headers={"Content-Type": "image/png"},
                            body=PNG_CARDIOMEGALY.read_bytes())


class FakeClassifier:
    """Just enough of a Classifier for LazyModel's states and status()."""
    backend = "fake"

    class manifest:
        @staticmethod
        def identity():
            return {"name": "fake"}

    def identity(self):
        return self.manifest.identity()
