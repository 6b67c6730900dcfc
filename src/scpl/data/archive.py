"""Safe extraction of downloaded dataset archives (tar and zip) next to the archive.

Only plain files and folders inside the archive's top folder are extracted, into a temporary
folder that is renamed into place in one step, so an interrupted extraction never leaves a
half-filled folder that would look present.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from scpl.errors import DataError


def is_within(base: Path, name: str) -> bool:
    """True if archive member ``name`` stays inside ``base`` once extracted."""
    if not name or os.path.isabs(name) or name.startswith(("/", "\\")):
        return False
    target = (base / name).resolve()
    base = base.resolve()
    return target == base or base in target.parents


def publish_dir(tmp_root: Path, top: str, dest_dir: Path) -> None:
    """Move ``tmp_root/top`` to ``dest_dir/top`` in one rename, so a crash mid-extraction
    never leaves a half-filled folder that would look present."""
    src = tmp_root / top
    if not src.is_dir():
        raise DataError(f"archive did not contain the folder {top}/; delete it and re-download")
    final = dest_dir / top
    try:
        os.replace(src, final)
    except OSError:
        # Another process (or an earlier partial copy) already put a folder there; keep it.
        if not final.is_dir():
            raise


def extract_tar(archive: Path, top: str) -> None:
    """Safely extract ``archive`` next to itself; only plain files/dirs under ``top/``."""
    dest = archive.parent
    try:
        tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{top}.", suffix=".part"))
    except OSError as e:
        raise DataError(
            f"cannot extract {archive}: its folder is not writable ({e}); extract it by hand"
        ) from None
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = []
            for m in tar:
                # Links and devices are never part of these datasets; refusing them closes
                # the classic tar path-traversal holes even without the stdlib data filter.
                if not (m.isfile() or m.isdir()) or not is_within(tmp, m.name):
                    raise DataError(
                        f"{archive}: refusing unsafe archive member {m.name!r}; "
                        f"delete the file and re-download"
                    )
                members.append(m)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # pragma: no cover - Python without the PEP 706 backport
                tar.extractall(tmp, members=members)
        publish_dir(tmp, top, dest)
    except DataError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"{archive} is truncated or corrupt ({type(e).__name__}: {e}); "
            f"delete it and re-download, or extract it by hand"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def extract_zip(archive: Path, top: str) -> None:
    """Safely extract ``archive`` next to itself (see :func:`extract_tar`)."""
    dest = archive.parent
    try:
        tmp = Path(tempfile.mkdtemp(dir=dest, prefix=f".{top}.", suffix=".part"))
    except OSError as e:
        raise DataError(
            f"cannot extract {archive}: its folder is not writable ({e}); extract it by hand"
        ) from None
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if not is_within(tmp, name):
                    raise DataError(
                        f"{archive}: refusing unsafe archive member {name!r}; "
                        f"delete the file and re-download"
                    )
            zf.extractall(tmp)
        publish_dir(tmp, top, dest)
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"{archive} is truncated or corrupt ({type(e).__name__}: {e}); "
            f"delete it and re-download, or extract it by hand"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
