"""Fetch the public MovieLens archives, verify their published checksums, unpack into the data directory."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from foundrec.errors import DataError

DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class Archive:
    file: str
    md5: str  # the checksum GroupLens publishes beside each archive (`<file>.md5`)
    folder: str  # folder inside the zip


ARCHIVES = {
    "ml-100k": Archive("ml-100k.zip", "0e33842e24a9c977be4e0107933c0723", "ml-100k"),
    "ml-1m": Archive("ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906", "ml-1m"),
}


def download(
    name: str,
    data_dir: Path,
    base_url: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Download `name` into data_dir/name (files already there are kept); returns that folder.

    `base_url` (or the env var FOUNDREC_MOVIELENS_URL) points at a mirror; the checksum is always checked.
    """
    if name not in ARCHIVES:
        raise DataError(f"no download for {name!r}; downloadable: {', '.join(ARCHIVES)}")
    archive = ARCHIVES[name]
    base = base_url or os.environ.get("FOUNDREC_MOVIELENS_URL") or DEFAULT_BASE_URL
    url = base.rstrip("/") + "/" + archive.file
    data_dir.mkdir(parents=True, exist_ok=True)
    partial = data_dir / (archive.file + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"download of {url} failed: {exc}; check the network or set FOUNDREC_MOVIELENS_URL"
        ) from None
    if digest.hexdigest() != archive.md5:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {url}: md5 {digest.hexdigest()}, expected {archive.md5}; "
            "the file is damaged or not the published archive"
        )
    target = data_dir / name
    with zipfile.ZipFile(partial) as zf:
        for member in zf.infolist():
            parts = Path(member.filename).parts
            if member.is_dir() or len(parts) < 2 or parts[0] != archive.folder or ".." in parts:
                continue
            dest = target.joinpath(*parts[1:])
            if dest.exists():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    partial.unlink()
    return target
