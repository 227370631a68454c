"""JupyterLab 4 in a real browser (Debian's Chromium, driven by Playwright): one scripted session
with a torchbook notebook, checking what a person sees. Screenshots go to build/ui/.

The kernel's state is read from the Jupyter server's REST API (the toolbar's indicator reports
idle before the kernel has answered), the cells are run with Shift+Enter, and every check waits
for what the page shows."""

import json
import os
import re
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import nbformat
import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "ui"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/lib/chromium/chromium")
TOKEN = "torchbook-ui-test"
DONE = re.compile(r"\[\d+\]:")

CELLS = [
    'println!("hello from JupyterLab");',
    "let t = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4]);\nt.shallow_clone()",
    "let xs: Vec<f64> = (0..100).map(|i| i as f64 / 10.0).collect();\n"
    "let ys: Vec<f64> = xs.iter().map(|x| x.sin()).collect();\n"
    'plot::Line::new().xy("sin", &xs, &ys).title("a wave")',
    "manual_seed(0);\n"
    "let xs = Tensor::rand(&[4000, 2], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;\n"
    "let ys = (xs.select(1, 0) * xs.select(1, 1)).gt(0.0).to_kind(Kind::Int64);\n"
    "let data = Dataset::new(xs, ys)?;\n"
    "let mut model = Model::new(Sequential::new().add(Dense::new(64)).add(ReLU).add(Dense::new(2)), &[2])?;\n"
    "model.compile(Optimizer::adam(1e-2), Loss::cross_entropy(), &[Metric::Accuracy]);",
    "let history = model.fit(&data, FitOptions { epochs: 40, batch_size: 16, validation: Validation::Split(0.2), ..Default::default() })?;",
    'let n: i32 = "text";',
    "let long = model.fit(&data, FitOptions { epochs: 100000, batch_size: 16, ..Default::default() })?;",
    'format!("{} more epochs, interrupted: {}, {} in all", long.len(), long.interrupted, history.len() + long.len())',
    "",
    "",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base, path):
    with urllib.request.urlopen(f"{base}{path}?token={TOKEN}", timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def lab():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    root = pathlib.Path(tempfile.mkdtemp(prefix="torchbook-lab-"))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "torchbook", "display_name": "Rust (torchbook)", "language": "rust"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nbformat.write(nb, root / "session.ipynb")
    port = free_port()
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(root / ".config"),
        JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(root / ".workspaces"),
        JUPYTER_RUNTIME_DIR=str(root / ".runtime"),
    )
    log = open(root / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        # CI containers run as root, which Jupyter refuses without this flag.
        + (["--allow-root"] if os.geteuid() == 0 else []),
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            api(base, "/api/status")
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not start: " + (root / "server.log").read_text()[-3000:])
            time.sleep(0.3)
    yield base, root
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def wait_kernel_idle(base, timeout=120):
    """The notebook's kernel as the server sees it: started, connected and idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sessions = api(base, "/api/sessions")
        if sessions and sessions[0]["kernel"]["execution_state"] == "idle":
            return sessions[0]["kernel"]
        time.sleep(0.25)
    raise AssertionError(f"the kernel did not become idle: {api(base, '/api/sessions')}")


def cell(page, index):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(index)


def run_cell(page, index, wait=True, timeout=180_000):
    """Selects cell `index` in command mode and runs it with Shift+Enter."""
    target = cell(page, index)
    target.locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")
    if wait:
        wait_done(target, timeout)
    return target


def wait_done(target, timeout=180_000):
    """Until the cell's prompt shows its execution count instead of `[*]`."""
    expect(target.locator(".jp-InputPrompt")).to_have_text(DONE, timeout=timeout)


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_session_in_jupyterlab(lab):
    base, root = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            session(page, base)
        except Exception:
            shot(page, "failure")
            raise
        finally:
            browser.close()


def session(page, base):
    page.goto(f"{base}/lab/tree/session.ipynb?token={TOKEN}")
    expect(cell(page, 0)).to_be_visible(timeout=60_000)
    wait_kernel_idle(base)
    expect(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator, "
                        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-KernelName").first).to_be_visible()

    # Printed text.
    out = run_cell(page, 0).locator(".jp-OutputArea-output")
    expect(out).to_contain_text("hello from JupyterLab")

    # A tensor's HTML summary table.
    out = run_cell(page, 1).locator(".jp-OutputArea-output")
    expect(out.locator("table").first).to_be_visible()
    expect(out).to_contain_text("[3, 4]")

    # A plot as an image (SVG inline or PNG).
    out = run_cell(page, 2).locator(".jp-OutputArea-output")
    expect(out.locator("svg, img").first).to_be_visible()
    shot(page, "01-text-tensor-plot")

    run_cell(page, 3)

    # fit with verbose 1: the live block changes in place, then the static summary.
    fit = run_cell(page, 4, wait=False)
    live = fit.locator(".jp-OutputArea-output").first
    expect(live).to_contain_text("loss", timeout=120_000)
    states, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        prompt = fit.locator(".jp-InputPrompt").inner_text()
        text = live.inner_text() if live.count() else ""
        if text and (not states or states[-1] != text):
            states.append(text)
        if "*" not in prompt:
            break
        if len(states) == 2:
            shot(page, "02-fit-live")
        time.sleep(0.1)
    wait_done(fit)
    assert len(set(states)) >= 2, f"the live block never changed: {states}"
    expect(fit.locator(".jp-OutputArea")).to_contain_text("Trained 40 epoch(s)")
    shot(page, "03-fit-final")

    # A compile error's traceback with the caret line.
    error = run_cell(page, 5).locator(".jp-OutputArea-output")
    expect(error).to_contain_text("mismatched types")
    expect(error).to_contain_text("^")
    shot(page, "04-compile-error")

    # The stop button interrupts a long fit; the next cell still sees the model and History.
    long = run_cell(page, 6, wait=False)
    expect(long.locator(".jp-OutputArea-output").first).to_contain_text("loss", timeout=120_000)
    time.sleep(1.0)
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) [data-jp-item-name='interrupt'] button, "
                 ".jp-NotebookPanel:not(.lm-mod-hidden) [data-jp-item-name='interrupt']").first.click()
    wait_done(long, timeout=60_000)
    summary = run_cell(page, 7).locator(".jp-OutputArea-output")
    expect(summary).to_contain_text("interrupted: true")
    expect(summary).to_contain_text(" in all")
    shot(page, "05-interrupted")

    # Tab completion lists a prelude item. The session's first completion loads rust-analyzer
    # (tens of seconds), longer than JupyterLab waits for a completion provider (1 s by
    # default), so that Tab shows nothing; once the kernel is idle again, Tab lists.
    editor = cell(page, 8).locator(".cm-content")
    editor.click()
    page.keyboard.type("let l = Layer")
    page.keyboard.press("Tab")
    time.sleep(1.5)
    wait_kernel_idle(base)
    completer = page.locator(".jp-Completer")
    if not completer.is_visible():
        page.keyboard.press("Tab")
    expect(completer).to_be_visible(timeout=30_000)
    expect(completer).to_contain_text("LayerNorm")
    shot(page, "06-completion")
    page.keyboard.press("Escape")

    # Shift-Tab shows a signature.
    editor = cell(page, 9).locator(".cm-content")
    editor.click()
    page.keyboard.type("Dense::new")
    page.keyboard.press("Shift+Tab")
    tooltip = page.locator(".jp-Tooltip")
    expect(tooltip).to_be_visible(timeout=90_000)
    expect(tooltip).to_contain_text("units")
    shot(page, "07-inspect")
    page.keyboard.press("Escape")

    # Restart the kernel from the UI and run a cell again.
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) [data-jp-item-name='restart'] button, "
                 ".jp-NotebookPanel:not(.lm-mod-hidden) [data-jp-item-name='restart']").first.click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    time.sleep(1.0)
    wait_kernel_idle(base)
    again = run_cell(page, 0)
    expect(again.locator(".jp-OutputArea-output")).to_contain_text("hello from JupyterLab")
    expect(again.locator(".jp-InputPrompt")).to_have_text("[1]:")
    shot(page, "08-after-restart")
