"""torchbook under Apache Zeppelin's Jupyter bridge (modelled in zeppelin_bridge.py from
Zeppelin's own bridge code): tables as Zeppelin tables, tracebacks without ANSI codes, errors
as ERROR paragraphs, rich values as the one MIME type Zeppelin picks."""

import os

import pytest

from zeppelin_bridge import ZeppelinBridge

FIT = """
manual_seed(0);
let xs = Tensor::rand(&[256, 2], (Kind::Float, Device::Cpu));
let ys = (xs.select(1, 0) + xs.select(1, 1)).gt(1.0).to_kind(Kind::Int64);
let data = Dataset::new(xs, ys)?;
let mut model = Model::new(Sequential::new().add(Dense::new(8)).add(ReLU).add(Dense::new(2)), &[2])?;
model.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy]);
let history = model.fit(&data, FitOptions { epochs: 3, batch_size: 64, validation: Validation::Split(0.25), ..Default::default() })?;
"""


@pytest.fixture(scope="module")
def zeppelin():
    # Zeppelin sets ZEPPELIN_HOME and INTERPRETER_GROUP_ID in the interpreter's environment.
    bridge = ZeppelinBridge(dict(os.environ, ZEPPELIN_HOME="/opt/zeppelin", INTERPRETER_GROUP_ID="jupyter-shared-process"))
    yield bridge
    bridge.close()


def table_rows(text):
    return [line.split("\t") for line in text.strip("\n").split("\n")]


def test_printed_text_is_text(zeppelin):
    p = zeppelin.run('println!("hello from torchbook");')
    assert (p.status, p.results) == ("SUCCESS", [["TEXT", "hello from torchbook\n"]])


def test_history_evaluation_and_tables_are_zeppelin_tables(zeppelin):
    fit = zeppelin.run(FIT)
    assert fit.status == "SUCCESS", fit.results
    # No live block (Zeppelin drops its updates): a line per epoch as it ends, then the epochs
    # as a Zeppelin table under a headline.
    assert not fit.of_type("HTML"), fit.results
    text = "".join(fit.of_type("TEXT"))
    assert text.count("epoch ") >= 3 and "Trained 3 epoch(s)" in text, text
    [epochs] = fit.of_type("TABLE")
    assert len(table_rows(epochs)) == 4
    history = zeppelin.run("history")
    [table] = history.of_type("TABLE")
    rows = table_rows(table)
    assert rows[0][:3] == ["epoch", "loss", "accuracy"] and "val_loss" in rows[0] and "seconds" in rows[0], rows[0]
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
    evaluation = zeppelin.run("model.evaluate(&data, 64)?")
    [table] = evaluation.of_type("TABLE")
    assert table_rows(table)[0] == ["loss", "accuracy"]
    custom = zeppelin.run('Table::new().column("name", vec!["a", "b"])?.column("score", vec![0.5, 0.25])?')
    assert custom.results == [["TABLE", "name\tscore\na\t0.5\nb\t0.25\n"]]


def test_errors_are_plain_text_error_paragraphs(zeppelin):
    compile_error = zeppelin.run('let n: i32 = "text";')
    assert compile_error.status == "ERROR"
    text = "".join(t for _, t in compile_error.results)
    assert "\x1b[" not in text and "^" in text and "mismatched types" in text, text
    panic = zeppelin.run('panic!("boom")')
    assert panic.status == "ERROR"
    text = "".join(t for _, t in panic.results)
    assert "boom" in text and "\x1b[" not in text, text
    after = zeppelin.run("1 + 1")
    assert (after.status, after.results) == ("SUCCESS", [["TEXT", "2"]])


def test_a_tensor_shows_as_html(zeppelin):
    p = zeppelin.run("Tensor::from_slice(&[1.0f32, 2.0, 3.0])")
    [html] = p.of_type("HTML")
    assert "<table" in html and "[3]" in html
