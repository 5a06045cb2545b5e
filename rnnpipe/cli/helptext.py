"""The help texts of `rnnpipe` and its commands: what each does, in words, and examples."""

DESCRIPTION = """\
A character-level recurrent network (RNN, LSTM or GRU) in pure numpy, as a
Unix filter: train a model on any text you can pipe, then generate text from
it, score text with it, describe it, or see what it sees (an HTML page of a
text coloured by its surprise or by one unit). The model is one file
(msgpack). With pip install 'rnnpipe[torch]', --engine torch trains, scores
and samples the same model file with PyTorch, on a GPU and under torchrun
too, and export/import move its weights to and from a PyTorch file.

Run `rnnpipe COMMAND --help` for a command's options.
Exit status: 0 success, 1 runtime error, 2 usage error, 130/143 when
training was interrupted by SIGINT/SIGTERM (after saving the model);
`score --over` exits as grep does (see rnnpipe score --help)."""


EPILOG = """\
example:
  cat *.txt | rnnpipe train -m shakespeare.msgpack
  rnnpipe sample -m shakespeare.msgpack -n 500 --temperature 0.8 | less
  rnnpipe show -m shakespeare.msgpack act1.txt -o act1.html"""


TRAIN_DESCRIPTION = """\
Train MODEL on the text of the FILEs, or of stdin when there are none or a
FILE is "-". MODEL is created when it does not exist (architecture options
choose its shape); otherwise it is loaded and training continues where it
stopped, with characters it has not seen before added to its vocabulary. A
run that stopped early (Ctrl-C, --max-time) is continued exactly, from the
same place in the same pass, when run again on the same unchanged input
(`rnnpipe info` shows what is pending; --restart starts a new pass instead).
Text piped again after an interrupted run is recognised by a fingerprint,
and what the run trained on is skipped. A run bounded by --max-time alone is
finished when its time is up: the same command trains as long again, going
on where the text does. A run on a trained model starts at the learning rate
its last run ended at and never rises above it (README.md, "Running it
again").

Input is read as UTF-8 (invalid bytes become U+FFFD and are counted) and
streamed, so memory does not grow with the input. It is cut into blocks of
about a million characters by position; a pipe's text that has waited 2
seconds is trained on at once as a shorter block, so `tail -f LOG | rnnpipe
train -m MODEL` learns each line within seconds. How a pipe delivers the
text changes nothing as long as each million characters comes within 2
seconds.

How long it trains: one pass over the text by default; --epochs N passes;
with --max-time and no --epochs, pass after pass over the FILEs until the
time is up (whichever of --epochs and --max-time ends first, with both).
FILEs are read again from disk for each pass. Stdin can be read only once:
without --epochs it is one pass, and --epochs above 1 spools it to a
temporary file. Input that is evidently binary (NUL bytes, or over a tenth of its
first 64 KiB invalid UTF-8) is refused, as grep would; --binary trains on it.

The model is saved atomically at the end, every --save-every seconds, and
on Ctrl-C (SIGINT, exit 130) or SIGTERM (exit 143): the file is always a
whole, loadable model, even if the process is killed outright. Empty input
leaves an existing model byte for byte as it was, a pending run included. If the loss climbs far above where it
was or becomes NaN, training rolls back to its last good state and divides
--lr by 4, saying so; after four tries it stops with an error and the file
is as it was before the run. A failed save (a full disk) stops training with
an error and the file keeps its last saved state.

--engine torch trains with PyTorch (the same maths, the same model file) on
--device. Under torchrun (torchrun --nproc_per_node N -m rnnpipe train
--engine torch -m MODEL FILE...) the ranks train their shares of the
--batch-size streams of the FILEs with DDP; rank 0 alone holds the lock,
saves and shows progress.

One trainer at a time per model, `rnnpipe train` or a notebook's
%%charrnn_train: a run holds a lock on MODEL.lock beside the model (removed
at the end) while it trains, and a second run on the same model fails at
once, naming the first one's process id. Temporary files .MODEL.*.tmp that
a killed run left behind are removed by the next run.

Progress goes to stderr: a bar on a terminal, a status line every few seconds
otherwise, nothing with -q; the share done and the ETA count toward whichever
limit ends the run first. While text is typed on the terminal no progress is
shown, so none mixes with the typing: only the summary at the end. Losses are
smoothed bits per character of the training text; held-out bits per character
are measured with --valid-fraction."""


TRAIN_EPILOG = """\
examples:
  rnnpipe train -m kafka.msgpack kafka.txt              # a new model (a GRU, the defaults): one pass
  rnnpipe train -m kafka.msgpack --max-time 60 kafka.txt   # train it more: a minute of passes
  rnnpipe train -m kafka.msgpack --epochs 5 kafka.txt   # five more passes
  cat *.txt | rnnpipe train -m big.msgpack --hidden 512 --layers 2 --dropout 0.2 --max-time 3600
  tail -f app.log | rnnpipe train -m log.msgpack --save-every 60 -q
  rnnpipe train -m seed.msgpack --cell rnn --hidden 100 --seq-length 25 \\
      --batch-size 1 --optimizer adagrad --lr 0.1 input.txt   # the original min-char-rnn"""


SAMPLE_DESCRIPTION = """\
Write N characters generated by MODEL to stdout, as they are generated, or
fewer where --lines or --until stops sooner. --prime conditions the model on a
text first (and is written out first unless --no-echo-prime). The same --seed
with the same model gives the same text on any machine. Stops quietly when the
reader of the pipe goes away. On a terminal the text ends with a newline; into
a pipe or file it is exactly the prime and the generated characters.

A --temperature below 1e-30 counts as 0 (the likeliest character); a huge one
samples almost uniformly from the vocabulary, and inf exactly uniformly. A
--top-k of the vocabulary's size or more samples from all of it, as without
--top-k. A prime with characters the model has never seen is refused, unless
--skip-unknown."""


SAMPLE_EPILOG = """\
examples:
  rnnpipe sample -m kafka.msgpack -n 1000
  rnnpipe sample -m kafka.msgpack -n 0 --temperature 0.7 | less     # until you quit less
  rnnpipe sample -m kafka.msgpack --prime 'Gregor ' --seed 1 -n 200
  rnnpipe sample -m kafka.msgpack --beam 8 --lines 3 --prime 'Gregor '   # the likeliest 3 lines
  rnnpipe sample -m kafka.msgpack -n 2000 --until '.'                 # one sentence, at most 2000 characters
  rnnpipe sample -m kafka.msgpack --prime-file opening.txt -n 500   # a long, multi-line prime
  head -c 400 story.txt | rnnpipe sample -m kafka.msgpack --prime-file - --no-echo-prime"""


SHOW_DESCRIPTION = f"""\
Write one self-contained HTML page (CSS and JS inline, nothing loaded from the
network: it opens from disk) showing the text of FILE (or stdin) with each
character coloured by how surprised MODEL was to see it: -log2 of the
probability it gave the character, in bits, white (0) through yellow and
orange to dark red (8 bits or more). The header gives the text's bits per
character and the model; hovering over a character, or focusing it (Tab to
the text, then the arrow keys), shows the probability and the model's top
five guesses for it. With --neuron K the colour is unit K's activation
instead (see --neuron).

The text is read as `rnnpipe eval` reads it, as one continuous stream, so the
header's bits per character are eval's for the same text. Characters the
model has never seen are shown grey and skipped (neither predicted nor
context); the first character has nothing before it and is not predicted.
Input is UTF-8 (invalid bytes become U+FFFD, with a warning). At most the
first {20_000:,} characters are shown: a longer text is cut there, with a note
on the page and on stderr.

The page goes to stdout unless -o names a file."""


SHOW_EPILOG = """\
examples:
  rnnpipe show -m kafka.msgpack chapter.txt -o surprise.html
  tail -n 40 notes.txt | rnnpipe show -m notes.msgpack -o notes.html
  rnnpipe show -m kafka.msgpack chapter.txt | gzip > surprise.html.gz      # the page on stdout
  rnnpipe show -m kafka.msgpack --neuron 17 chapter.txt -o unit17.html   # what unit 17 tracks"""


NEURONS_DESCRIPTION = f"""\
Find units of MODEL that track simple features of the text of FILE (or stdin):
inside double quotes, inside parentheses or brackets, the position in the
line, the first character of a word, just after a newline. Each feature is
computed from the text; each unit's activation after each character (LSTM:
tanh of the cell state; GRU and RNN: the hidden state) is correlated with it
(Pearson, over the characters the model knows), and the units with the
largest |correlation| for each feature are printed as a table: unit, layer,
feature, correlation. A feature the text does not vary (no quotes in it, say)
is named on stderr and left out. At most the first {50_000:,} characters are
read. --html DIR writes the `rnnpipe show --neuron` page of each unit listed."""


NEURONS_EPILOG = """\
examples:
  rnnpipe neurons -m kafka.msgpack kafka.txt
  rnnpipe neurons -m kafka.msgpack --top 1 --html pages kafka.txt   # the best unit per feature, and its page"""


EVAL_DESCRIPTION = """\
Score the text of the FILEs (or stdin) under MODEL without training it:
cross-entropy in bits and nats per character, and perplexity. The FILEs are
one text, read as one continuous stream: each character is predicted from
all the text before it, so the score does not depend on how the input is
split, piped or paced. Characters the model has never seen cannot be scored:
they are skipped (neither predicted nor context, as if they were not there)
and counted as unknown. Use text the model was not trained on to measure how
well it generalises."""


EVAL_EPILOG = """\
examples:
  rnnpipe eval -m kafka.msgpack held-out.txt
  tail -n 100 notes.txt | rnnpipe eval -m notes.msgpack --json | jq .bits_per_char"""


SCORE_DESCRIPTION = """\
Write each line of the FILEs (or stdin) as BITS<TAB>LINE as soon as it
arrives: BITS is the line's bits per character under MODEL, its newline
included, so `| sort -rn | head` lists the lines least like what the model
has learned. The FILEs are read as eval reads them, one continuous stream:
each character is predicted from all the text before it, across lines, and
the lines' bits add up to eval's total for the same text. Characters the
model has never seen are skipped and counted, as eval skips them; a line with
nothing scored has bits per character nan. Each line is flushed as it is
written, so a pipe's reader sees it at once; memory stays bounded however
long the input (a line longer than 1,048,576 characters is scored whole and
written cut, with a note).

--over X writes only the lines above X bits per character, a grep for the
unusual, and exits as grep does: 0 when a line was written, 1 when none, 2 on
any error (usage or runtime). -c writes only how many lines were selected.
-q writes nothing; without --learn it stops at the first line over X.

--learn trains MODEL on each line after scoring it, as `rnnpipe train` trains
on a pipe: under the model's lock, saved every --save-every seconds (60 by
default), at the end and on Ctrl-C (exit 130), continued exactly by the same
command on the same text after an interruption. New characters join the
vocabulary as training meets them; until then they are unknown.
`tail -f app.log | rnnpipe score -m log.msgpack --learn --over 5` is a log
watcher that keeps learning what normal looks like. MODEL must exist: train
it on some normal text first."""


SCORE_EPILOG = """\
examples:
  rnnpipe score -m log.msgpack today.log | sort -rn | head        # the ten most unusual lines
  rnnpipe score -m log.msgpack --over 6 today.log                 # only the lines above 6 bits/char
  if rnnpipe score -m log.msgpack --over 6 -q today.log; then echo unusual; fi
  rnnpipe score -m log.msgpack --json today.log | jq -r 'select(.worst_prob < 0.001) | .text'
  tail -f app.log | rnnpipe score -m log.msgpack --learn --over 5   # watch, flag, keep learning"""


INFO_DESCRIPTION = """\
Describe MODEL: architecture, parameter count, vocabulary (escaped), training
hyperparameters, training state (iterations, characters seen, last loss) and
file format version."""


INFO_EPILOG = """\
examples:
  rnnpipe info -m kafka.msgpack
  rnnpipe info -m kafka.msgpack --json | jq .vocabulary_size"""


EXPORT_DESCRIPTION = """\
Write MODEL's weights to a PyTorch file: a dict with "state_dict" (the
weights by the names torch.nn.RNN, LSTM or GRU(V, H, L) gives them, under
"rnn.", and torch.nn.Linear(H, V)'s under "head."; input is one-hot over the
vocabulary), "vocab" (the characters, in index order) and "config" (the
model file's). torch.load(FILE, weights_only=True) reads it; README.md shows
the lines that load it into plain torch modules. Needs pip install
'rnnpipe[torch]'. Only the weights travel, not the optimiser state."""


EXPORT_EPILOG = """\
example:
  rnnpipe export -m kafka.msgpack --torch kafka.pt"""


IMPORT_DESCRIPTION = """\
Make a new MODEL from a PyTorch file in export's layout: a dict with
"state_dict", "vocab" and "config" (without "config", the cell, size, layers
and dtype are read from the weights' shapes). torch's two biases per gate add
up into rnnpipe's one. The model starts with fresh optimiser state; the
weights are exactly the file's. MODEL must not exist. Needs pip install
'rnnpipe[torch]'."""


IMPORT_EPILOG = """\
example:
  rnnpipe import --torch kafka.pt -m kafka2.msgpack"""
