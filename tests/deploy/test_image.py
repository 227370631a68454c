"""The container image (`make image`, Containerfile): run it as a JupyterLab server, create a torchbook
kernel through the server's REST API and run a tch cell over its websocket. The kernel runs as the
image's ordinary user against the prelude cache built into the image, read-only: the first tch cell
must not build it. `make test-image` (part of `make test-slow`); environment: IMAGE, PODMAN (the
podman command, with its runtime), PODMAN_FLAGS, TORCHBOOK_DIR (where the image has the install)."""

import json
import os
import secrets
import shlex
import socket
import subprocess
import time
import uuid

import pytest
import requests
import websocket

IMAGE = os.environ["IMAGE"]
PODMAN = shlex.split(os.environ.get("PODMAN", "podman"))
FLAGS = shlex.split(os.environ.get("PODMAN_FLAGS", ""))
TORCHBOOK_DIR = os.environ.get("TORCHBOOK_DIR", "/opt/torchbook")
CELL = "Tensor::ones([2, 2], FLOAT_CPU).sum(Kind::Float)"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    port, token, name = free_port(), secrets.token_hex(16), f"torchbook-test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    # Spares off: nothing should keep computing after the test's cells.
    run = subprocess.run(PODMAN + ["run", "-d", "--rm", "--name", name, "-e", "TORCHBOOK_SPARE_ENGINE=0"] + FLAGS + [
        IMAGE, "jupyter", "lab", "--ip=127.0.0.1", f"--port={port}", "--no-browser", f"--ServerApp.token={token}",
    ], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/api/status", params={"token": token}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            logs = subprocess.run(PODMAN + ["logs", name], capture_output=True, text=True)
            assert time.monotonic() < deadline, logs.stdout + logs.stderr
            time.sleep(0.5)
        yield {"url": url, "token": token, "name": name, "up_s": time.monotonic() - started}
    finally:
        subprocess.run(PODMAN + ["rm", "-f", "-t", "5", name], capture_output=True)


def test_a_tch_cell_in_the_containers_kernel(server):
    auth = {"Authorization": f"token {server['token']}"}
    specs = requests.get(f"{server['url']}/api/kernelspecs", headers=auth, timeout=10).json()
    assert "torchbook" in specs["kernelspecs"], specs
    t0 = time.monotonic()
    kernel = requests.post(f"{server['url']}/api/kernels", json={"name": "torchbook"}, headers=auth, timeout=60)
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]
    ws = websocket.create_connection(
        f"{server['url'].replace('http', 'ws', 1)}/api/kernels/{kernel_id}/channels",
        header=[f"Authorization: token {server['token']}"], timeout=5)
    session = uuid.uuid4().hex

    def execute(code, timeout=600):
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session, "username": "test",
                       "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "content": {"code": code, "silent": False},
            "channel": "shell", "buffers": []}))
        messages, replied, idle = [], False, False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            assert time.monotonic() < deadline, [m["msg_type"] for m in messages]
            try:
                msg = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            messages.append(msg)
            replied |= msg["msg_type"] == "execute_reply"
            idle |= msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
        results = [m["content"]["data"]["text/plain"] for m in messages if m["msg_type"] == "execute_result"]
        errors = [m["content"]["evalue"] for m in messages if m["msg_type"] == "error"]
        streams = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
        return results, errors, streams

    try:
        results, errors, streams = execute(CELL)
        first = time.monotonic() - t0
        assert not errors and results and "4" in results[-1], f"{results} {errors}\n{streams}"
        assert "Building the torchbook prelude" not in streams, streams
        home, _, _ = execute('std::env::var("HOME").unwrap()')
        assert home == ['"/home/jovyan"'], home
        probe, errors, _ = execute(f'std::fs::write("{TORCHBOOK_DIR}/cache/x", b"x").err().and_then(|e| e.raw_os_error())')
        assert probe == ["Some(13)"], (probe, errors)
    finally:
        ws.close()
    print(f"\nimage {IMAGE}: JupyterLab up in {server['up_s']:.1f} s; first tch cell {first:.1f} s after POST /api/kernels "
          f"(as jovyan)")
    assert first < 120, f"the first tch cell took {first:.0f} s: was the prelude rebuilt?"
