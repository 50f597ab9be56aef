"""Unpack the offline mini-XTREME bundle (checksummed) into the configured data root. Safe to run again."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from ..atomic import atomic_dir
from ..checksums import sha256_file
from ..errors import XstiltsError

MARKER = ".xstilts-bundle-sha256"


def expected_sha(bundle: Path) -> str | None:
    sums = bundle.with_name("SHA256SUMS")
    if not sums.is_file():
        return None
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == bundle.name:
            return parts[0]
    return None


def verify_manifest(root: Path) -> int:
    """Check every file listed in MANIFEST.tsv (size and SHA-256); returns the number checked."""
    manifest = root / "MANIFEST.tsv"
    if not manifest.is_file():
        raise XstiltsError(f"{manifest} missing: {root} is not an unpacked xtreme-mini bundle")
    lines = manifest.read_text(encoding="utf-8").splitlines()
    n = 0
    for line_no, line in enumerate(lines[1:], 2):
        cols = line.split("\t")
        if len(cols) < 3:
            raise XstiltsError(f"{manifest}:{line_no}: expected path, bytes and sha256 columns")
        path = root / cols[0]
        if not path.is_file():
            raise XstiltsError(f"bundle file missing: {path} (listed in {manifest}:{line_no})")
        if sha256_file(path) != cols[2]:
            raise XstiltsError(f"bundle file corrupt: {path} does not match its SHA-256 in {manifest}:{line_no}")
        n += 1
    return n


def unpack(bundle: str | Path, root: str | Path) -> str:
    """Extract `bundle` so that `root` is its `xtreme-mini/` folder; returns what was done."""
    bundle, root = Path(bundle), Path(root)
    if not bundle.is_file():
        if (root / MARKER).is_file():
            return f"{root} already unpacked (bundle {bundle} not found; nothing to check it against)"
        raise XstiltsError(f"data bundle not found: {bundle} (expected ../shared/data/xtreme-mini.tar.gz beside "
                           f"the repository; pass --bundle or set data.bundle)")
    digest = sha256_file(bundle)
    want = expected_sha(bundle)
    if want and digest != want:
        raise XstiltsError(f"{bundle}: SHA-256 {digest} does not match SHA256SUMS ({want})")
    marker = root / MARKER
    if marker.is_file() and marker.read_text().strip() == digest:
        return f"{root} is up to date"
    with atomic_dir(root) as tmp:
        with tarfile.open(bundle, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        inner = tmp / "xtreme-mini"
        if not inner.is_dir():
            raise XstiltsError(f"{bundle}: expected a top-level xtreme-mini/ folder")
        for child in inner.iterdir():
            shutil.move(str(child), tmp / child.name)
        inner.rmdir()
        n = verify_manifest(tmp)
        (tmp / MARKER).write_text(digest + "\n")
    return f"unpacked {bundle} into {root} ({n} files verified)"
