"""`rnnpipe info`: what a model file holds, in words or as JSON."""

from __future__ import annotations

import json
import math

from .common import escape, read_model


def cmd_info(args, io):
    import msgpack

    from ..modelfile import FORMAT

    model, raw = read_model(args.model)
    version = msgpack.unpackb(raw, raw=False)["version"]  # checked by the load: the version the file has
    r = model.resume
    resume = None
    later = None  # the iterations of the later model a run keeping the best goes on from (holdout.py)
    if r is not None and r.current is not None:
        later = type(model).from_bytes(r.current).iterations
    if r is not None:
        resume = {
            "epoch": r.epoch,
            "epochs": r.epochs,
            "fraction": r.fraction,
            "inputs": [i["name"] for i in r.inputs],
            "offset": r.offset,
            "chunk": r.chunk,
            "interrupted": r.interrupted,  # false: the run finished, and this is where its text goes on
            "best_bits": r.best,  # keep-best: this model's held-out bits/char, the best its run measured
            "goes_on_from": later,  # ... and the iterations of the later model the next run trains on from
        }
    cfg = model.config
    log2 = math.log(2)
    last = None if model.last_loss is None else model.last_loss / log2
    smooth = model.smooth_loss / log2
    data = {
        "model": args.model,
        "format": FORMAT,
        "version": version,
        "file_bytes": len(raw),
        "config": cfg.to_dict(),
        "parameters": int(model.num_params),
        "vocabulary_size": len(model.vocab),
        "vocabulary": "".join(model.vocab.chars),
        "iterations": model.iterations,
        "chars_seen": model.chars_seen,
        "last_loss_bits": last,
        "smooth_loss_bits": smooth,
        "resume": resume,
        "trained_on": model.trained_on,  # None: no update yet, or a file from before version 6
        "chosen": model.chosen,  # why a new model got its architecture when rnnpipe chose it, else None
    }
    if args.json:
        print(json.dumps(data), file=io.stdout)
    else:
        arch = f"{cfg.cell}, {cfg.layers} layer(s) of {cfg.hidden} units, {cfg.optimizer} optimizer, {cfg.dtype}"
        training = (
            f"seq-length {cfg.seq_length}, batch-size {cfg.batch_size}, lr {cfg.lr:g}, "
            f"dropout {cfg.dropout:g}, clip {cfg.clip:g}, weight-decay {cfg.weight_decay:g}, seed {cfg.seed}"
        )
        loss = "none yet" if last is None else f"{last:.4f} bits/char (smoothed {smooth:.4f})"
        lines = [
            f"model         {escape(args.model)} ({data['file_bytes']} bytes)",
            f"format        {FORMAT} version {version}",
            f"architecture  {arch}",
            *([f"chosen        {escape(model.chosen)}"] if model.chosen else []),
            f"parameters    {data['parameters']}",
            f"training      {training}",
            f"vocabulary    {len(model.vocab)} characters: {escape(model.vocab.chars)}",
            f"iterations    {model.iterations}",
            f"chars seen    {model.chars_seen}",
            f"last loss     {loss}",
            f"trained on    {_trained_on(model)}",
            f"pending       {_pending(r)}",
        ]
        if r is not None and r.best is not None:
            on = "" if later is None else f"; the next run trains on from the later model it kept (iteration {later})"
            lines.append(f"held out      {r.best:.4f} bits/char: the best model its run measured, this one{on}")
        print("\n".join(lines), file=io.stdout)
    io.stdout.flush()
    return 0


def _pending(r):
    """What an interrupted run left to do, in words."""
    if r is None:
        return "nothing (the last run finished)"
    of = "" if r.epochs is None else f" of {r.epochs}"
    at = "" if r.fraction is None else f" at {r.fraction:.0%}"
    names = ", ".join(escape(i["name"]) for i in r.inputs) or "its text"  # a file's names reach a terminal
    if not r.interrupted:
        where = f"pass {r.epoch}{at} of {names}"
        return f"nothing (the last run finished; a timed or piped run on the same text goes on from {where})"
    return f"epoch {r.epoch}{of}{at} of {names}: rnnpipe train on the same input finishes it (--restart starts anew)"


def _trained_on(model):
    """The engine and device of the latest update, in words (the file's text, escaped: it reaches a terminal)."""
    if model.trained_on is not None:
        return escape(model.trained_on)
    if not model.iterations:
        return "no update yet"
    return "not recorded (the file predates rnnpipe recording it, version 6)"
