"""papermill with torchbook notebooks: the stock `papermill` command (the plug-in in
python/papermill-torchbook installed, no flag) injects parameters that keep the types the
notebook's `parameters` cell declares, refuses undeclared or ill-typed ones clearly, and
`--help-notebook` lists the declared parameters with their types."""

import json
import math
import pathlib
import subprocess
import sys
import tempfile

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "07-papermill-parameters.ipynb"
PAPERMILL = pathlib.Path(sys.executable).parent / "papermill"


def papermill(*args, timeout=600):
    out = pathlib.Path(tempfile.mkdtemp(prefix="torchbook-papermill-")) / "out.ipynb"
    run = subprocess.run(
        [str(PAPERMILL), str(NOTEBOOK), str(out), "--log-output", *args],
        capture_output=True, text=True, timeout=timeout,
    )
    nb = nbformat.read(out, as_version=4) if out.exists() else None
    return run, nb


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def injected(nb):
    cells = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "papermill injects one cell"
    return cells[0]


def value(cell):
    results = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert results, f"no value from {cell.source!r}: {cell.outputs}"
    return results[-1].data["text/plain"]


def test_parameters_of_every_kind_keep_their_declared_types():
    run, nb = papermill(
        "-p", "epochs", "3", "-p", "learning_rate", "0.05", "-y", "hidden: [16, 8]",
        "-p", "run_name", 'trial "1" — ünïcode', "-p", "shuffle", "False", "-p", "patience", "2",
        "-p", "max_val_loss", "nan",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    cell = injected(nb)
    assert ":param epochs = 3" in cell.source and ":param max_val_loss = NaN" in cell.source
    assert not [o for o in cell.outputs if o.output_type == "error"]
    summary = json.loads(value(code_cells(nb)[3]))  # text/plain of a String is its Debug form
    assert summary.startswith(
        'trial "1" — ünïcode: 3 epochs, learning rate 0.05, hidden [16, 8], shuffle false, patience Some(2); best val_loss'
    ), summary
    assert summary.endswith("(limit NaN)"), summary
    assert 0.0 <= float(value(code_cells(nb)[-1])) <= 1.0


def test_none_and_infinity_and_an_integer_for_a_float():
    run, nb = papermill("-p", "patience", "None", "-p", "max_val_loss", "inf", "-p", "learning_rate", "1", "-p", "epochs", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(value(code_cells(nb)[3]))
    assert "1 epochs, learning rate 1, " in summary and "patience None" in summary and summary.endswith("(limit inf)"), summary


def test_an_undeclared_parameter_is_warned_about_and_fails_clearly():
    run, nb = papermill("-p", "epochs", "1", "-p", "lr", "0.1")
    assert run.returncode != 0
    assert "Passed unknown parameter: lr" in run.stderr, run.stderr[-2000:]
    errors = [o for o in injected(nb).outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "ParameterError", injected(nb).outputs
    assert "does not declare" in errors[0].evalue and "`learning_rate`" in errors[0].evalue, errors[0].evalue
    assert "ParameterError" in run.stderr  # papermill's PapermillExecutionError shows it


@pytest.mark.parametrize(
    "args, found",
    [
        (["-p", "epochs", "abc"], 'papermill passed the string "abc"'),
        (["-p", "epochs", "-2"], "-2, which does not fit in a `usize`"),
        (["-y", "hidden: [16, x]"], 'declared as `Vec<i64>`, but papermill passed the string "x"'),
        (["-y", "hidden: {a: 1}"], "a dict cannot be a Rust parameter"),
    ],
)
def test_a_value_that_does_not_fit_names_type_and_value(args, found):
    run, nb = papermill(*args)
    assert run.returncode != 0
    errors = [o for o in injected(nb).outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "ParameterError" and found in errors[0].evalue, injected(nb).outputs
    later = [o for c in code_cells(nb)[2:] for o in c.outputs]
    assert not later, "nothing after the failed injected cell runs"


def test_help_notebook_lists_declared_parameters_with_types():
    run = subprocess.run([str(PAPERMILL), "--help-notebook", str(NOTEBOOK)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout
    assert "epochs: usize (default 8)" in lines and "training epochs" in lines, lines
    assert "hidden: Vec<i64> (default vec![32, 32])" in lines, lines
    assert "patience: Option<usize> (default None)" in lines, lines
    assert "max_val_loss: f64 (default f64::INFINITY)" in lines, lines


def test_translator_writes_rust_safe_values():
    from papermill.translators import papermill_translators

    import papermill_torchbook

    for name, language in [("torchbook", "python"), ("torchbook-gpu", "x"), ("renamed", "rust")]:
        assert papermill_translators.find_translator(name, language) is papermill_torchbook.TorchbookTranslator
    code = papermill_torchbook.TorchbookTranslator.codify(
        {"a": 1, "b": math.inf, "c": -math.inf, "d": 'q"\\\n✓', "e": (1, None), "f": False}
    )
    assert code.splitlines()[2:] == [
        ":param a = 1", ":param b = Infinity", ":param c = -Infinity", ':param d = "q\\"\\\\\\n✓"',
        ":param e = [1, null]", ":param f = false",
    ]
    params = papermill_torchbook.inspect_source("let x = 3; // three\nlet mut y = 2.5;\nlet s = \"a\";\nlet v = f(\n  1,\n);")
    assert [(p.name, p.inferred_type_name, p.default, p.help) for p in params] == [
        ("x", "i32", "3", "three"), ("y", "f64", "2.5", ""), ("s", "&str", '"a"', ""), ("v", "None", "f( 1, )", ""),
    ]
