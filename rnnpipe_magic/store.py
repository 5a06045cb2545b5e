"""Models held between a notebook's cells, keyed by file or name; a file
that changed on disk since (another process trained it) is read again."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field

from IPython.core.error import UsageError

from rnnpipe import session

DEFAULT_NAME = "default"


@dataclass
class Entry:
    """A model held between cells."""

    model: object
    label: str  # how messages name it
    path: str | None = None
    stamp: tuple | None = None  # the file's (mtime, size, inode) when last read or written
    saved_at: int | None = None  # the iteration the file holds, when it holds this model
    curve: list = field(default_factory=list)  # (iteration, smooth bits, held-out bits) over this session


def stamp(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def find(models, args, create):
    """The cached entry for -m/--name, read again if its file changed;
    None when there is none and create is true."""
    from rnnpipe import Model, ModelFormatError

    if args.model and args.name:
        raise UsageError("give -m FILE or --name NAME, not both")
    if not args.model:
        name = args.name or DEFAULT_NAME
        entry = models.get(("name", name))
        if entry is None and not create:
            raise UsageError(
                f"no model named {name!r} in this session; train one with %%charrnn_train --name {shlex.quote(name)}"
            )
        return entry
    path = os.path.abspath(os.path.expanduser(args.model))
    key, now = ("file", path), stamp(path)
    entry = models.get(key)
    if now is None:  # the file is the truth: gone means start afresh
        models.pop(key, None)
        if not create:
            creating = session.being_created(path)
            if creating:
                raise UsageError(f"{args.model}: {creating}")
            raise UsageError(f"no model file {args.model}; train one with %%charrnn_train -m {shlex.quote(args.model)}")
        return None
    if entry is None or entry.stamp != now:
        try:
            model = Model.load(path)
        except ModelFormatError as e:
            raise UsageError(f"{args.model}: {e}") from None
        except OSError as e:
            raise UsageError(f"cannot read {args.model}: {e.strerror}") from None
        entry = models[key] = Entry(model, args.model, path, now, saved_at=model.iterations)
    return entry
