"""Example notebooks executed headless with nbclient, as nbconvert and papermill run them."""

import pathlib

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.ipynb"))


def execute(nb):
    client = nbclient.NotebookClient(nb, kernel_name="torchbook", timeout=300)
    client.execute()
    return nb


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_without_errors(path):
    nb = execute(nbformat.read(path, as_version=4))
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), "execution_count starts at 1, in order"
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{cell.source!r} failed: {output}"


def test_basics_notebook_values():
    nb = execute(nbformat.read(ROOT / "examples" / "01-rust-basics.ipynb", as_version=4))
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0].outputs
    assert first[0].output_type == "stream" and first[0].text == "hello from torchbook\n"
    assert first[1].data["text/plain"] == "20"
    fit = code[4].outputs[-1].data["text/plain"]
    assert fit == '"w = 3.000, b = 1.000"', fit


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


def test_model_api_notebook_trains():
    nb = execute(nbformat.read(ROOT / "examples" / "02-model-api.ipynb", as_version=4))
    code = [c for c in nb.cells if c.cell_type == "code"]
    value = lambda cell: [o for o in cell.outputs if o.output_type == "execute_result"][0].data["text/plain"]
    assert "Total params: 1218" in "".join(o.get("text", "") for o in code[1].outputs)
    assert value(code[2]) == "true", "validation accuracy above 0.9"
    assert value(code[3]) == "[1, 0, 1]"
    assert value(code[4]) == "true", "saved and loaded weights predict the same"
    assert value(code[5]) == '"model input: expected shape [batch, 2], found [4, 3]"'


def test_rich_output_notebook():
    nb = execute(nbformat.read(ROOT / "examples" / "03-rich-output.ipynb", as_version=4))
    code = [c for c in nb.cells if c.cell_type == "code"]

    def outputs(cell, kind):
        return [o for o in cell.outputs if o.output_type == kind]

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
