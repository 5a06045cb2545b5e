"""IPython magics for rnnpipe: ``%%charrnn_train``, ``%charrnn_sample``, ``%%charrnn_show`` (and ``%%charrnn_score``,
in score.py).

Load with ``%load_ext rnnpipe_magic`` (IPython comes with
``pip install 'rnnpipe[notebook]'``)::

    %%charrnn_train -m kafka.msgpack --cell rnn --hidden 100 --max-time 60 -o run
    One morning, when Gregor Samsa woke from troubled dreams, ...

    %charrnn_sample -m kafka.msgpack -n 300 --temperature 0.8 --prime "Gregor " -o text

    %%charrnn_show -m kafka.msgpack --neuron 17
    "Oh, God", he thought, "what a strenuous career it is that I've chosen!"

The options are those of ``rnnpipe train``, ``rnnpipe sample`` and ``rnnpipe show`` (one table,
rnnpipe.options), plus a few that only make sense in a notebook: ``--name``
keeps a model in memory without a file, ``--text VAR`` trains on a string the
notebook already holds, ``-o VAR`` stores a result in the user's namespace
(the text for sample, a TrainResult for train). The line is split as a POSIX
shell splits it, so quotes and backslashes work as they do on the command line.

Models stay in memory between cells, keyed by file or name; a model file that
changed on disk since (another process trained it, say) is read again.
Training a model file goes through rnnpipe.session, as `rnnpipe train` does:
the same lock (one trainer per file, whichever face), stale temp files
removed under it, atomic saves (periodic with --save-every), and signals
that only stop training between iterations.
"""

from __future__ import annotations

try:
    import IPython  # noqa: F401  (checked here, before the magics' modules import it)
except ImportError as e:
    # IPython is an extra: the core and the CLI install without it
    raise ModuleNotFoundError(
        f"rnnpipe_magic needs IPython ({e}); install it with: pip install 'rnnpipe[notebook]'", name="IPython"
    ) from e

from .sample import SampleMagics
from .score import ScoreMagics
from .show import ShowMagics
from .train import TrainMagics
from .views import TrainResult  # noqa: F401  (what `%%charrnn_train -o VAR` stores, by its name here too)

MAGICS = (TrainMagics, SampleMagics, ShowMagics, ScoreMagics)  # one class a magic, over one dict of models


def load_ipython_extension(ipython):
    models = {}  # held between cells, keyed by file or name (store.py), by every magic alike
    ipython.register_magics(*(magics(ipython, models) for magics in MAGICS))


def unload_ipython_extension(ipython):
    manager = ipython.magics_manager
    for magics in MAGICS:
        for kind, names in magics.magics.items():
            for name in names:
                manager.magics[kind].pop(name, None)
        manager.registry.pop(magics.__name__, None)
