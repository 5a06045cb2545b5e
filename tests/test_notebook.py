"""examples/metamorphosis.ipynb runs top to bottom in a real Jupyter kernel.

Run as a script to execute the notebook at its full setting and save the
outputs into it (what the committed outputs are):

    OPENBLAS_NUM_THREADS=1 python tests/test_notebook.py --write
"""

import sys
import tempfile
import time
from pathlib import Path

import nbformat
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "metamorphosis.ipynb"
SHORT = "TRAIN_SECONDS = 2"


def run(nb, tmp_path, timeout=120):
    """Execute nb in a kernel of this very interpreter (whatever kernels the
    machine has registered), from examples/ as Jupyter would."""
    kernels = Path(tmp_path) / "kernels"
    write_kernel_spec(kernels / "python3")  # argv is sys.executable -m ipykernel_launcher
    km = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    client = NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    return nb


def text(cell):
    """Everything a cell showed as text: streams and text/plain displays."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out.data.get("text/plain", ""))
    return "".join(parts)


def test_notebook_runs_and_samples(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0].source.startswith("TRAIN_SECONDS = ")
    params[0].source = SHORT
    run(nb, tmp_path)

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []

    reading = [c for c in code if "kafka.txt" in c.source]
    assert len(reading) == 1 and text(reading[0]) == "data has 137628 chars, 80 unique\n"  # the header is off

    def cells_with(magic):
        return [c for c in code if c.source.lstrip("%").startswith(magic)]

    samples = cells_with("charrnn_sample ")
    assert len(samples) == 5
    for cell in samples:
        printed = text(cell)
        # the one newline the magic ends with; the text itself may end in newlines of its own
        assert printed.endswith("\n")
        printed = printed[:-1]
        n = int(cell.source.split(" -n ")[1].split()[0])
        prime = cell.source.split("--prime ")[1].split()[0] if "--prime" in cell.source else ""
        assert printed.startswith(prime) and len(printed) == len(prime) + n
    lstm = [text(c).rstrip("\n") for c in samples if "--name lstm" in c.source]
    assert len(set(lstm)) == 2  # cooler sampling gave different text

    training = cells_with("charrnn_train ")
    assert len(training) == 3
    for cell in training:
        shown = text(cell)
        assert "new model" in shown and ("time limit: trained on" in shown or "end of input: trained on" in shown)
    # the short setting really was used: the two long runs stopped on time
    assert sum("time limit: trained on" in text(c) for c in training) == 2

    compare = text(code[-1])
    assert "vanilla RNN" in compare and "LSTM" in compare and "held out" in compare


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {sys.argv[0]} --write   (executes {NOTEBOOK.name} in full and saves its outputs)")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        run(nb, tmp, timeout=900)
    nbformat.write(nb, NOTEBOOK)
    print(f"executed {NOTEBOOK} in {time.monotonic() - start:.0f} s")
