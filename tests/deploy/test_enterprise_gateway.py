"""torchbook under the real Jupyter Enterprise Gateway (PyPI, requirements-eg.txt, its own venv:
`make test-eg`). EG starts the kernel with `torchbook launch` through its DistributedProcessProxy on
this host (remote_hosts=['localhost']: EG skips ssh for a local host and starts the launcher
itself), receives the encrypted connection info on its response address, and talks to the kernel
over its REST API and websocket as a gateway client (JupyterLab with --gateway-url) does: cells,
an interrupt through POST /api/kernels/{id}/interrupt (EG sends {"signum": 2} to the launcher's
communication port), restart, delete, and no launcher or engine process left behind."""

import base64
import json
import os
import pathlib
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import requests
import websocket
from Cryptodome.Cipher import AES, PKCS1_v1_5
from Cryptodome.PublicKey import RSA
from Cryptodome.Util.Padding import unpad

BIN = os.environ.get("TORCHBOOK_BIN", "")
KERNEL = "torchbook_eg"
LOWER = random.randrange(20000, 40000)
PORT_RANGE = (LOWER, LOWER + 1500)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_with(text):
    """Processes whose command line contains `text`."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def children(pid):
    result = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            result.append(int(entry.name))
    return result


def alive(pid):
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def gateway():
    assert BIN and os.access(BIN, os.X_OK), "TORCHBOOK_BIN must name the built torchbook binary"
    root = pathlib.Path(tempfile.mkdtemp(prefix="torchbook-eg-"))
    logs = root / "logs"
    logs.mkdir()
    install = subprocess.run(
        [BIN, "install", "--enterprise-gateway", "--prefix", str(root), "--name", KERNEL,
         "--display-name", "Rust (torchbook, EG)", "--no-prelude"],
        capture_output=True, text=True, timeout=60)
    assert install.returncode == 0, install.stderr
    spec = json.loads((root / "share/jupyter/kernels" / KERNEL / "kernel.json").read_text())
    assert spec["metadata"]["process_proxy"]["class_name"].endswith("DistributedProcessProxy")
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update({
        "JUPYTER_PATH": str(root / "share/jupyter"),
        "JUPYTER_DATA_DIR": str(root / "data"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "EG_KERNEL_LOG_DIR": str(logs),
        "EG_RESPONSE_IP": "127.0.0.1",
        "EG_KERNEL_LAUNCH_TIMEOUT": "60",
    })
    inherited = ["TORCHBOOK_CACHE", "TORCHBOOK_SPARE_ENGINE", "TORCHBOOK_HISTORY"]
    env.setdefault("TORCHBOOK_SPARE_ENGINE", "0")
    command = [
        str(pathlib.Path(sys.executable).parent / "jupyter-enterprisegateway"),
        "--ip=127.0.0.1", f"--port={port}",
        f"--EnterpriseGatewayApp.auth_token={token}",
        "--EnterpriseGatewayApp.remote_hosts=['localhost']",
        f"--EnterpriseGatewayApp.port_range={PORT_RANGE[0]}..{PORT_RANGE[1]}",
        f"--EnterpriseGatewayApp.inherited_envs={inherited!r}",
        f"--EnterpriseGatewayApp.default_kernel_name={KERNEL}",
        "--log-level=DEBUG",
    ]
    log = open(root / "gateway.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, (root / "gateway.log").read_text()[-4000:]
        try:
            if session.get(f"{url}/api/kernelspecs", timeout=2).ok:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "Enterprise Gateway did not start"
        time.sleep(0.3)
    specs = session.get(f"{url}/api/kernelspecs").json()["kernelspecs"]
    assert KERNEL in specs, specs
    yield {"url": url, "session": session, "token": token, "root": root, "logs": logs, "port": port}
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
    log.close()
    shutil.rmtree(root, ignore_errors=True)


class Channels:
    """The kernel's channels over EG's websocket, as a gateway client uses them."""

    def __init__(self, gateway, kernel_id):
        ws_url = gateway["url"].replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
        self.ws = websocket.create_connection(ws_url, header=[f"Authorization: token {gateway['token']}"], timeout=5)
        self.session = uuid.uuid4().hex

    def send(self, msg_type, content, channel="shell"):
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "session": self.session, "username": "test",
                       "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "content": content, "channel": channel, "buffers": [],
        }))
        return msg_id

    def collect(self, msg_id, timeout, until=None):
        """Messages parented to `msg_id` until its reply and `idle` have come (or `until(msg)`)."""
        messages, replied, idle = [], False, False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no reply within {timeout} s; got {[m['msg_type'] for m in messages]}"
            self.ws.settimeout(min(remaining, 5))
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            messages.append(msg)
            if until and until(msg):
                return messages
            replied |= msg["msg_type"].endswith("_reply")
            idle |= msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
        return messages

    def execute(self, code, timeout=300):
        messages = self.collect(self.send("execute_request", {"code": code, "silent": False}), timeout)
        reply = next(m for m in messages if m["msg_type"] == "execute_reply")["content"]
        return reply, messages

    def close(self):
        self.ws.close()


def result_text(messages):
    results = [m for m in messages if m["msg_type"] == "execute_result"]
    return results[-1]["content"]["data"]["text/plain"] if results else None


def kernel_log(gateway, kernel_id):
    path = gateway["logs"] / f"kernel-{kernel_id}.log"
    return path.read_text(errors="replace") if path.exists() else "(no kernel log)"


def launched(gateway, kernel_id, seconds=30):
    """The launcher's pid, its engine's pids, its ports and its communication port."""
    deadline = time.monotonic() + seconds
    while True:
        log = kernel_log(gateway, kernel_id)
        ports = re.findall(r"ports (\d+), (\d+), (\d+), (\d+), (\d+); communication port (\d+)", log)
        launchers = [p for p in pids_with(f"launch --kernel-id {kernel_id}") if alive(p)]
        if ports and launchers:
            break
        assert time.monotonic() < deadline, log
        time.sleep(0.2)
    *kernel_ports, comm = map(int, ports[-1])
    (launcher,) = launchers
    engines = [c for c in children(launcher) if b"engine" in pathlib.Path(f"/proc/{c}/cmdline").read_bytes()]
    return launcher, engines, kernel_ports, comm


def test_bad_public_key_is_a_clear_error():
    started = time.monotonic()
    run = subprocess.run(
        [BIN, "launch", "--kernel-id", str(uuid.uuid4()), "--response-address", "127.0.0.1:9",
         "--public-key", "bm90IGEga2V5", "--port-range", "0..0"],
        capture_output=True, text=True, timeout=30)
    assert run.returncode != 0
    assert "--public-key is not an RSA public key" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert time.monotonic() - started < 10


def start_launcher(spelling):
    """`torchbook launch` started by hand against a response socket of our own (no prelude: these
    checks need no cells), its arguments spelled as EG's older kernelspecs (`--RemoteProcessProxy.…`)
    or its kernel images (environment variables) pass them; returns the process, the kernel id, the
    payload it sent and the private key."""
    private = RSA.generate(1024)
    public = private.publickey().export_key("PEM").decode()
    public = public.replace("-----BEGIN PUBLIC KEY-----", "").replace("-----END PUBLIC KEY-----", "").replace("\n", "")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    kernel_id = str(uuid.uuid4())
    values = {"kernel-id": kernel_id, "response-address": f"127.0.0.1:{listener.getsockname()[1]}",
              "public-key": public, "port-range": f"{PORT_RANGE[0]}..{PORT_RANGE[1]}"}
    env = {**os.environ, "TORCHBOOK_SPARE_ENGINE": "0", "TORCHBOOK_PRELUDE": "0"}
    if spelling == "RemoteProcessProxy":
        argv = [a for name, value in values.items() for a in (f"--RemoteProcessProxy.{name}", value)]
    else:
        argv = []
        env.update({"KERNEL_ID": kernel_id, "RESPONSE_ADDRESS": values["response-address"],
                    "PUBLIC_KEY": public, "PORT_RANGE": values["port-range"]})
    launcher = subprocess.Popen([BIN, "launch", *argv], stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        listener.settimeout(30)
        conn, _ = listener.accept()
        data = b""
        while chunk := conn.recv(1024):
            data += chunk
        conn.close()
    except BaseException:
        os.killpg(launcher.pid, signal.SIGKILL)
        raise
    finally:
        listener.close()
    return launcher, kernel_id, data, private


def test_payload_decrypts_with_enterprise_gateways_code():
    """The payload decrypted by EG's own ResponseManager code; then bad input and a shutdown on
    the communication port."""
    from enterprise_gateway.services.processproxies.processproxy import ResponseManager

    launcher, kernel_id, data, private = start_launcher("RemoteProcessProxy")
    try:
        # ResponseManager._decode_payload, called on an instance that only has the private key.
        manager = ResponseManager.__new__(ResponseManager)
        manager._private_key = private
        manager._response_registry = {}
        manager.log = __import__("logging").getLogger("test")
        info = manager._decode_payload(data.decode())
        assert info["kernel_id"] == kernel_id
        assert info["pid"] == launcher.pid and info["pgid"] == launcher.pid
        assert info["transport"] == "tcp" and info["signature_scheme"] == "hmac-sha256" and len(info["key"]) >= 32
        for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port", "comm_port"):
            assert PORT_RANGE[0] <= info[name] <= PORT_RANGE[1], (name, info)
        assert len({info[n] for n in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port", "comm_port")}) == 6
        # The same decryption by hand, as documented: base64(JSON{version, key, conn_info}).
        payload = json.loads(base64.b64decode(data))
        aes_key = PKCS1_v1_5.new(private).decrypt(base64.b64decode(payload["key"]), None)
        plain = unpad(AES.new(aes_key, AES.MODE_ECB).decrypt(base64.b64decode(payload["conn_info"])), 16)
        assert json.loads(plain) == info
        # Garbage on the communication port is ignored; {"shutdown": 1} then ends the launcher.
        for junk in (b"garbage", b"\xff\xfe", b'{"signum": "x"}', b"[1, 2]", b'{"signum": 12}', b""):
            with socket.create_connection(("127.0.0.1", info["comm_port"]), timeout=5) as s:
                s.sendall(junk)
        time.sleep(0.5)
        assert launcher.poll() is None, "bad input stopped the launcher"
        with socket.create_connection(("127.0.0.1", info["comm_port"]), timeout=5) as s:
            s.sendall(b'{"shutdown": 1}')
        assert launcher.wait(timeout=20) == 0
        stderr = launcher.stderr.read().decode()
        assert "ignored a request" in stderr, stderr
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)


def test_signal_9_stops_launcher_and_engine_at_once():
    from enterprise_gateway.services.processproxies.processproxy import ResponseManager

    launcher, kernel_id, data, private = start_launcher("environment")
    try:
        manager = ResponseManager.__new__(ResponseManager)
        manager._private_key, manager._response_registry = private, {}
        manager.log = __import__("logging").getLogger("test")
        info = manager._decode_payload(data.decode())
        assert info["kernel_id"] == kernel_id and PORT_RANGE[0] <= info["comm_port"] <= PORT_RANGE[1]
        deadline = time.monotonic() + 10
        while not (engines := children(launcher.pid)):
            assert time.monotonic() < deadline, "no engine started"
            time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", info["comm_port"]), timeout=5) as s:
            s.sendall(b'{"signum": 9}')
        started = time.monotonic()
        launcher.wait(timeout=10)
        assert time.monotonic() - started < 3
        assert wait_gone(engines, 5), "the engine was killed with the launcher"
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)


def test_kernel_lifecycle_through_enterprise_gateway(gateway):
    session, url = gateway["session"], gateway["url"]
    started = time.monotonic()
    created = session.post(f"{url}/api/kernels", json={"name": KERNEL, "env": {"KERNEL_USERNAME": "tester"}}, timeout=120)
    assert created.status_code == 201, created.text
    kernel_id = created.json()["id"]
    print(f"kernel started through EG in {time.monotonic() - started:.1f} s")
    try:
        launcher, engines, ports, comm = launched(gateway, kernel_id)
        for port in ports + [comm]:
            assert PORT_RANGE[0] <= port <= PORT_RANGE[1], (ports, comm)
        assert os.getpgid(launcher) == launcher, "jupyter_client starts the launcher in a session of its own"
        channels = Channels(gateway, kernel_id)
        started = time.monotonic()
        reply, messages = channels.execute("let x = 40 + 2; x")
        assert reply["status"] == "ok", (reply, kernel_log(gateway, kernel_id)[-4000:])
        assert result_text(messages) == "42"
        print(f"first cell in {time.monotonic() - started:.1f} s")
        engines = engines or [c for c in children(launcher) if b"engine" in pathlib.Path(f"/proc/{c}/cmdline").read_bytes()]
        assert engines, "the engine runs as the launcher's child"

        # A long cell, interrupted through EG's REST API (interrupt_mode signal: the comm port).
        long_cell = ('println!("started"); for _ in 0..600 { std::thread::sleep(std::time::Duration::from_millis(100)); '
                     'torchbook::check_interrupt()?; } 0')
        msg_id = channels.send("execute_request", {"code": long_cell, "silent": False})
        channels.collect(msg_id, 120, until=lambda m: m["msg_type"] == "stream" and "started" in m["content"]["text"])
        time.sleep(1)
        asked = time.monotonic()
        interrupted = session.post(f"{url}/api/kernels/{kernel_id}/interrupt", timeout=30)
        assert interrupted.status_code == 204, interrupted.text
        messages = channels.collect(msg_id, 30)
        took = time.monotonic() - asked
        reply = next(m for m in messages if m["msg_type"] == "execute_reply")["content"]
        assert reply["status"] == "error" and reply["ename"] != "WorkerDied", reply
        assert took < 2.5, f"stopped by the interrupt flag, not by the grace period's kill ({took:.1f} s)"
        assert "Interrupt" in kernel_log(gateway, kernel_id), "the interrupt came through the communication port"
        reply, messages = channels.execute("x + 1")
        assert reply["status"] == "ok" and result_text(messages) == "43", "variables survive the interrupt"
        channels.close()

        # Restart: EG stops this launcher and starts a new one with the same kernel id.
        restarted = session.post(f"{url}/api/kernels/{kernel_id}/restart", timeout=120)
        assert restarted.status_code == 200, restarted.text
        assert wait_gone([launcher] + engines), f"old launcher/engine left: {[p for p in [launcher] + engines if alive(p)]}"
        launcher, engines, _, _ = launched(gateway, kernel_id)
        channels = Channels(gateway, kernel_id)
        reply, messages = channels.execute("let y = 6 * 7; y")
        assert reply["status"] == "ok" and result_text(messages) == "42", reply
        reply, _ = channels.execute("x")
        assert reply["status"] == "error", "a restarted kernel starts empty"
        engines = engines or [c for c in children(launcher) if b"engine" in pathlib.Path(f"/proc/{c}/cmdline").read_bytes()]
        channels.close()
    except BaseException:
        print(kernel_log(gateway, kernel_id)[-6000:])
        print((gateway["root"] / "gateway.log").read_text()[-6000:])
        raise
    finally:
        deleted = session.delete(f"{url}/api/kernels/{kernel_id}", timeout=120)
    assert deleted.status_code == 204, deleted.text
    assert engines
    assert wait_gone([launcher] + engines), f"left behind: {[p for p in [launcher] + engines if alive(p)]}"
    assert not [p for p in pids_with(kernel_id) if alive(p)], "no process of this kernel is left"
    assert session.get(f"{url}/api/kernels/{kernel_id}").status_code == 404
