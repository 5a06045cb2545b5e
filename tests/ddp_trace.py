"""`rnnpipe train` under torchrun, each rank writing down which streams of
each chunk it trained (for tests/test_torch.py): run as
`torchrun ... tests/ddp_trace.py TRACE_DIR train ...`. "{rank}" in an
argument becomes the rank's number, so ranks can be given different paths."""

import json
import os
import sys

import rnnpipe.cli
from rnnpipe.engines import ddp

folder = sys.argv[1]
argv = [a.replace("{rank}", os.environ["RANK"]) for a in sys.argv[2:]]
seen = []
share = ddp.World.share


def traced(self, B):
    lo, hi = share(self, B)
    seen.append([lo, hi, B])
    return lo, hi


ddp.World.share = traced
status = rnnpipe.cli.main(argv)
with open(os.path.join(folder, f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump({"shares": seen, "status": status}, f)
sys.exit(status)
