"""Files replaced whole: written under a temporary name, synced, renamed over the old one, and the rename
synced too, so a crash or a lost machine leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sync_dir(path: Path) -> None:
    """Make a rename in directory `path` durable (best effort: some file systems cannot sync a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file(folder: Path, prefix: str) -> Path:
    """An empty file made here and now under a name no one chose ahead: a link planted at a name known
    beforehand (as one fetched from a rented machine could be) would take the write elsewhere. Its mode
    is the umask's, as a plain open's; two writers never share one."""
    while True:
        tmp = folder / f"{prefix}{secrets.token_hex(4)}.tmp"
        try:
            _create_new(tmp)
        except FileExistsError:
            continue
        return tmp


def _create_new(path: Path) -> None:
    """An empty file made at `path`, which must not exist (not even as a link): FileExistsError else."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))


def claim_new(parent: Path, stem: str, suffix: str = "", folder: bool = True) -> Path:
    """`parent/<stem><suffix>` made new (a folder, or with `folder` False an empty file), else
    `<stem>-2<suffix>`, `-3`, ... where that is taken: two commands started in the same second each get
    their own, and neither writes into the other's."""
    parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        p = parent / f"{stem}{'' if i == 1 else f'-{i}'}{suffix}"
        try:
            if folder:
                p.mkdir()
            else:
                _create_new(p)
        except FileExistsError:
            continue
        return p
    raise FileExistsError(f"{parent / stem}{suffix}: names up to -999 are all taken")


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, that `folder`'s file system takes (255 where it does not say)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _tmp_prefix(folder: Path, name: str) -> str:
    """`.<name>.<pid>.`, its `name` cut short where the whole temporary name (with 8 random hex digits
    and `.tmp`) would be longer than the file system takes: a target named near that limit can still be
    written. Where the file system takes too short names for even that (a `name` cut to nothing), the
    temporary name is made without it, and its creation says whether the file system takes it."""
    room = _name_max(folder) - len(f"..{os.getpid()}.") - len("01234567.tmp")
    while name and len(os.fsencode(name)) > room:
        name = name[:-1]
    return f".{name}.{os.getpid()}."


@contextmanager
def replaced_whole(path: Path) -> Iterator[Path]:
    """A temporary name next to `path` to write to; once written it is synced and renamed over `path`.
    Nothing is renamed when the body raises, and the temporary file is removed. Where the temporary file
    cannot be made (no permission, no such folder), the error names `path`, the file asked for."""
    path = Path(path)
    try:
        tmp = _new_file(path.parent, _tmp_prefix(path.parent, path.name))
    except OSError as e:
        raise type(e)(e.errno, e.strerror, str(path)) from e
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        sync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_whole(path: Path, text: str) -> None:
    with replaced_whole(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def user_path(text: str) -> Path:
    """A path as a scenario gives it, `~` expanded; a `~name` that names no user is left as written (its
    file is then not found, said as such)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


def input_problem(path: Path, folder_ok: bool = False) -> str | None:
    """Why `path` cannot be read as an input file (or, with `folder_ok`, a folder); None when it can.
    A pipe or a device is refused: reading one may never end. A name the system refuses (too long, no
    permission to look) is said as the system says it."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "file not found"
    except OSError as e:
        return e.strerror or str(e)
    except ValueError:  # a NUL in the name
        return "not a usable file name"
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    return f"not a file{' or directory' if folder_ok else ''} (a pipe or a device?)"


def read_problem(e: OSError | UnicodeDecodeError) -> str:
    """Why a text file the user named could not be read, said for people: the system's reason (`cannot
    read: Is a directory`), or for text in another encoding which one it likely is (Windows PowerShell
    writes UTF-16)."""
    if isinstance(e, UnicodeDecodeError):
        utf16 = ": UTF-16, as PowerShell writes" if e.object[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        return f"not UTF-8 text (byte {e.start}{utf16}): save it as UTF-8"
    return f"cannot read: {e.strerror or e}"


def parse_problem(e: BaseException) -> str:
    """What a JSON or YAML reader's error means, where it hit one of Python's own limits rather than the
    format's rules (RecursionError; the ValueError of an integer over 4,300 digits); else its text."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if "Exceeds the limit" in str(e):
        return "an integer of more than 4,300 digits"
    return str(e)
