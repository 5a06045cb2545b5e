"""`rnnpipe export` and `rnnpipe import`: a model's weights to and from a PyTorch file."""

from __future__ import annotations

import os

from .. import session
from .common import Failure, check_output, check_writable, load_model, write_output


def _export_module():
    from ..engines import Unavailable, torch_engine

    try:
        torch_engine()
    except Unavailable as e:
        raise Failure(str(e).replace("--engine torch", "export and import")) from None
    from ..engines import export

    return export


def cmd_export(args, io):
    export = _export_module()
    check_output(args.torch, args.model)  # before any work
    model = load_model(args.model)
    write_output(args.torch, export.to_bytes(model), "export", args.model)
    return 0


def cmd_import(args, io):
    export = _export_module()
    path = args.model
    check_writable(path)
    if not os.path.isfile(args.torch):
        raise Failure(f"{args.torch}: no such file")
    try:
        model = export.from_file(args.torch)
    except export.FormatError as e:
        raise Failure(f"{args.torch}: {e}") from None
    except Exception as e:  # torch.load's own refusals: not a torch file, pickled code
        raise Failure(f"{args.torch}: cannot load: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    try:
        with session.TrainLock(path, session.CLI):
            if os.path.exists(path):
                raise Failure(f"{path}: exists; import makes a new model (remove it first, or give another name)")
            session.Saver(model, path).save()
    except session.SessionError as e:
        raise Failure(str(e)) from None
    return 0
