"""Example notebooks executed headless with nbclient, as nbconvert and papermill run them. Each
notebook runs once per session; the metric targets of the application notebooks are asserted from
the JSON each notebook writes (torchbook::report) into TORCHBOOK_METRICS_DIR."""

import functools
import json
import os
import pathlib
import tempfile
import time

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.ipynb"))
METRICS = pathlib.Path(tempfile.mkdtemp(prefix="torchbook-metrics-"))
os.environ["TORCHBOOK_METRICS_DIR"] = str(METRICS)


def execute(nb, timeout=600):
    client = nbclient.NotebookClient(nb, kernel_name="torchbook", timeout=timeout)
    client.execute()
    return nb


@functools.lru_cache(maxsize=None)
def executed(name):
    """Runs examples/<name> once; returns the executed notebook and its wall time."""
    started = time.monotonic()
    nb = execute(nbformat.read(ROOT / "examples" / name, as_version=4))
    return nb, time.monotonic() - started


def metrics(name):
    executed(name + ".ipynb")
    return json.loads((METRICS / f"{name}.json").read_text())


def outputs(cell, kind):
    return [o for o in cell.outputs if o.output_type == kind]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_without_errors(path):
    nb, seconds = executed(path.name)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), "execution_count starts at 1, in order"
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{cell.source!r} failed: {output}"
    assert seconds < 300, f"{path.name} took {seconds:.0f} s (the budget is 5 minutes on 2 cores)"


def test_basics_notebook_values():
    nb, _ = executed("00-rust-basics.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0].outputs
    assert first[0].output_type == "stream" and first[0].text == "hello from torchbook\n"
    assert first[1].data["text/plain"] == "20"
    fit = code[4].outputs[-1].data["text/plain"]
    assert fit == '"w = 3.000, b = 1.000"', fit


def test_quickstart_trains_predicts_saves_and_loads():
    nb, _ = executed("01-quickstart.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    value = lambda cell: outputs(cell, "execute_result")[0].data["text/plain"]
    assert "[1000, 3]" in outputs(code[0], "execute_result")[0].data["text/html"], "tensor summary"
    assert "image/png" in outputs(code[1], "execute_result")[0].data, "a plot"
    final = outputs(code[3], "display_data")[-1].data["text/plain"]
    assert final.startswith("Trained"), "live progress ends in a static render"
    assert value(code[4]) == "[1, 0, 1]"
    assert value(code[5]) == "true", "saved and loaded weights predict the same"
    assert value(code[6]) == '"model input: expected shape [batch, 2], found [4, 3]"'
    assert metrics("01-quickstart")["val_accuracy"] >= 0.9


def test_image_classification_reaches_98_percent_on_held_out_mnist():
    m = metrics("02-image-classification")
    assert m["test_accuracy"] >= 0.98, m
    assert m["misclassified"] == round((1 - m["test_accuracy"]) * 1000), m
    assert m["restored_test_accuracy"] == m["test_accuracy"], "the checkpoint restores the model"
    nb, _ = executed("02-image-classification.ipynb")
    shown = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type in ("display_data", "execute_result")]
    plain = [o.data["text/plain"] for o in shown]
    assert any("heatmap 10×10" in p for p in plain), "confusion matrix"
    assert any(p.startswith("<grid of") for p in plain), "image grids"


def test_object_detection_on_mnist_scenes_reaches_map_0_8():
    m = metrics("03-object-detection")
    assert m["map50"] >= 0.8, m


def test_text_classification_reaches_90_percent():
    m = metrics("04-text-classification")
    assert m["test_accuracy"] >= 0.90, m
    assert m["typed_sentences_correct"] >= 6, m


def test_parquet_notebook_trains_from_the_file():
    m = metrics("08-parquet")
    assert m["rows"] == 5000, m
    assert m["test_accuracy"] >= 0.9, m
    nb, _ = executed("08-parquet.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    head = outputs(code[0], "execute_result")[0].data
    assert "<table>" in head["text/html"] and "[784 values]" in head["text/plain"], head
    assert "features [5000, 784] Float, targets [5000] Int64" in outputs(code[1], "stream")[0].text
    assert '["zero", "zero", "zero"] → ids [9, 9, 9]' in outputs(code[3], "stream")[0].text


def test_hyperparameter_search_ranks_trials_and_retrains_the_best():
    m = metrics("05-hyperparameter-search")
    assert m["trials"] == 12, m
    assert m["test_accuracy"] >= 0.95, m
    nb, _ = executed("05-hyperparameter-search.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    table = outputs(code[1], "execute_result")[0].data
    assert "ranked by best val_accuracy" in table["text/plain"] and "<table>" in table["text/html"]


def test_broken_cell_stops_with_a_clear_error():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("let a = 1;"),
            nbformat.v4.new_code_cell('let b: u8 = "not a number";'),
            nbformat.v4.new_code_cell("a + 1"),
        ]
    )
    with pytest.raises(nbclient.exceptions.CellExecutionError) as failure:
        execute(nb)
    shown = str(failure.value)
    assert "error[E0308]: mismatched types" in shown
    assert 'let b: u8 = "not a number";' in shown and "^^^" in shown


def test_errors_allowed_keeps_going():
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("let a = 1;"),
            nbformat.v4.new_code_cell('panic!("stop here")'),
            nbformat.v4.new_code_cell("a + 1"),
        ]
    )
    client = nbclient.NotebookClient(nb, kernel_name="torchbook", timeout=300, allow_errors=True)
    client.execute()
    assert nb.cells[1].outputs[0].ename == "Panic"
    assert nb.cells[2].outputs[0].data["text/plain"] == "2"


def test_rich_output_notebook():
    nb, _ = executed("06-rich-output.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]

    for cell in code:
        for output in cell.outputs:
            if output.output_type in ("display_data", "execute_result"):
                assert "text/plain" in output.data, f"{cell.source!r}: a bundle without text/plain"

    tensor = outputs(code[0], "execute_result")[0].data
    assert "[64, 32]" in tensor["text/html"] and "mean / std" in tensor["text/html"]
    assert "image/png" in outputs(code[1], "display_data")[0].data, "show_image"
    assert outputs(code[2], "execute_result")[0].data["text/plain"] == "<grid of 10 images>"
    chart = outputs(code[3], "execute_result")[0].data
    assert {"image/png", "image/svg+xml", "text/html"} <= set(chart)
    assert "image/png" in outputs(code[4], "display_data")[0].data, "histogram shown mid-cell"
    assert "image/png" in outputs(code[4], "execute_result")[0].data, "bar chart as the value"
    assert "heatmap 3×3" in outputs(code[5], "execute_result")[0].data["text/plain"]
    # nbclient applies update_display_data to the output with that display_id.
    assert outputs(code[6], "display_data")[0].data["text/html"] == "<b>step 5 of 5</b>"
    assert outputs(code[6], "stream")[0].text == "done"
    final = outputs(code[7], "display_data")[-1].data
    assert final["text/plain"].startswith("Trained 8 epoch(s)"), final["text/plain"]
    assert "val_accuracy" in final["text/html"] and "image/png" in final
    assert "Total params" in outputs(code[8], "execute_result")[0].data["text/html"]
    evcxr = outputs(code[9], "display_data")[0].data
    assert "hello from evcxr_display" in evcxr["text/html"]
