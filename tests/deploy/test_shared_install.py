"""A shared install (`torchbook install --shared DIR`, docs/DEPLOYMENT.md "JupyterHub and shared
installs") used by an unprivileged user: `make test-shared` installs it as root (building its
prelude cache once, or finding it built), then this test creates a user, runs a kernel as that user
against the shared cache without rebuilding it, checks that the user cannot write into the cache
and that their state stays theirs, and starts the same user's server through a real JupyterHub
(PyPI, requirements-hub.txt; configurable-http-proxy from npm; LocalProcessSpawner) and runs a tch
cell through the hub's proxy, over the single-user server's REST API and websocket.

Needs root (it creates the user, and the hub switches to that user); run from the hub's venv,
which every user can read. Environment: TORCHBOOK_SHARED (the --shared DIR), TORCHBOOK_SHARED_PREFIX
(the --prefix of its kernelspec), CHP (configurable-http-proxy)."""

import errno
import json
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

import pytest
import requests
import websocket

if os.geteuid() != 0:
    pytest.skip("the shared-install test creates a user and runs JupyterHub's LocalProcessSpawner: run it as root",
                allow_module_level=True)

SHARED = pathlib.Path(os.environ["TORCHBOOK_SHARED"])
JUPYTER_PATH = str(pathlib.Path(os.environ["TORCHBOOK_SHARED_PREFIX"]) / "share/jupyter")
CHP = os.environ["CHP"]
CACHE = SHARED / "cache"
USER = "tbshared"
CELL = "Tensor::ones([2, 2], FLOAT_CPU).sum(Kind::Float)"
# A cell that tries to write into the shared cache and reports the OS error number.
WRITE_PROBE = (f'std::fs::write("{CACHE}/written-by-a-user", b"x").err().and_then(|e| e.raw_os_error())')


def snapshot(root):
    """Every file and folder under `root` with its size, modification time and inode."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            found[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return found


def pids_of(uid):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except FileNotFoundError:
                pass
    return pids


def wait_no_processes(uid, seconds=30):
    deadline = time.monotonic() + seconds
    while pids_of(uid) and time.monotonic() < deadline:
        time.sleep(0.3)
    return pids_of(uid)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def user():
    """A fresh unprivileged user with a home of their own; removed afterwards."""
    try:
        pwd.getpwnam(USER)
        subprocess.run(["userdel", "-r", USER], check=False, capture_output=True)
    except KeyError:
        pass
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
    entry = pwd.getpwnam(USER)
    try:
        yield entry
    finally:
        left = wait_no_processes(entry.pw_uid, 10)
        for pid in left:  # only this test's user's processes, each by its id
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_no_processes(entry.pw_uid, 10)
        subprocess.run(["userdel", "-r", USER], check=False, capture_output=True)
        assert not left, f"processes of {USER} were left running: {left}"


@pytest.fixture(scope="module")
def cache_before():
    assert any(p.name.startswith("prelude-") for p in CACHE.iterdir()), f"no prelude built in {CACHE}"
    return snapshot(CACHE)


DRIVER = textwrap.dedent("""
    import json, os, sys, time
    from jupyter_client.manager import KernelManager

    cells = json.loads(sys.argv[1])
    started = time.monotonic()
    km = KernelManager(kernel_name="torchbook")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    out = {"kernel_pid": km.provisioner.process.pid, "cells": []}
    try:
        kc.wait_for_ready(timeout=120)
        out["ready_s"] = time.monotonic() - started
        for code in cells:
            t0 = time.monotonic()
            msg_id = kc.execute(code)
            result, errors, streams = None, [], []
            while True:
                msg = kc.get_iopub_msg(timeout=600)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "execute_result":
                    result = content["data"].get("text/plain")
                elif kind == "error":
                    errors.append(content["evalue"])
                elif kind == "stream":
                    streams.append(content["text"])
                elif kind == "status" and content["execution_state"] == "idle":
                    break
            out["cells"].append({"code": code, "result": result, "errors": errors, "streams": "".join(streams),
                                 "seconds": time.monotonic() - t0, "since_start_s": time.monotonic() - started})
        # The kernel's own working folder, while it runs.
        folders = [f for f in os.listdir("/tmp") if f.startswith("torchbook-") and f.count("-") == 2
                   and os.lstat(os.path.join("/tmp", f)).st_uid == os.getuid()]
        out["folders"] = []
        for name in folders:
            path = os.path.join("/tmp", name)
            st = os.lstat(path)
            links = 0
            for dirpath, _, files in os.walk(path):
                for f in files:
                    target = os.path.join(dirpath, f)
                    if os.path.islink(target) and os.readlink(target).startswith(sys.argv[2]):
                        links += 1
            out["folders"].append({"path": path, "uid": st.st_uid, "mode": st.st_mode & 0o777, "links_to_cache": links})
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    print("RESULT " + json.dumps(out), flush=True)
""")


def run_as_user(entry, args, env_extra=None, timeout=900):
    env = {"HOME": entry.pw_dir, "USER": USER, "LOGNAME": USER, "PATH": "/usr/local/bin:/usr/bin:/bin",
           "LANG": "C.UTF-8", "JUPYTER_PATH": JUPYTER_PATH, "TORCHBOOK_SPARE_ENGINE": "0"}
    env.update(env_extra or {})
    command = ["runuser", "-u", USER, "--", "env", "-i"] + [f"{k}={v}" for k, v in env.items()] + args
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=entry.pw_dir)


def test_kernel_as_another_user_uses_the_shared_cache_read_only(user, cache_before):
    driver = pathlib.Path(user.pw_dir) / "driver.py"
    driver.write_text(DRIVER)
    os.chown(driver, user.pw_uid, user.pw_gid)
    started = time.monotonic()
    done = run_as_user(user, [sys.executable, str(driver), json.dumps([CELL, WRITE_PROBE]), str(CACHE)])
    wall = time.monotonic() - started
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"driver failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-6000:]}"
    out = json.loads(lines[-1][len("RESULT "):])
    first, probe = out["cells"]
    print(f"\nshared install, kernel as {USER}: ready in {out['ready_s']:.1f} s, first tch cell {first['seconds']:.1f} s "
          f"({first['since_start_s']:.1f} s from the kernel's start), driver {wall:.1f} s")
    assert first["errors"] == [] and first["result"] is not None, first
    assert "4" in first["result"], first
    # No prelude build: that takes minutes and says so in the first cell.
    assert "Building the torchbook prelude" not in first["streams"], first["streams"]
    assert first["since_start_s"] < 90, f"the first tch cell took {first['since_start_s']:.0f} s: was the prelude rebuilt?"
    # The user's write into the shared cache fails with EACCES, inside the kernel and outside.
    assert probe["errors"] == [] and probe["result"] == f"Some({errno.EACCES})", probe
    attempt = run_as_user(user, [sys.executable, "-c", textwrap.dedent(f"""
        import errno, os, sys
        prelude = next(p for p in os.listdir("{CACHE}") if p.startswith("prelude-") and not p.endswith(".lock"))
        codes = []
        for path in ["{CACHE}/x", os.path.join("{CACHE}", prelude, "Cargo.lock")]:
            try:
                open(path, "a").close(); codes.append(0)
            except OSError as e:
                codes.append(e.errno)
        print(codes)
    """)])
    assert attempt.stdout.strip() == f"[{errno.EACCES}, {errno.EACCES}]", attempt.stdout + attempt.stderr
    # The kernel's folder was the user's own (mode 0700), seeded by links into the shared cache.
    (folder,) = [f for f in out["folders"]]
    assert folder["uid"] == user.pw_uid and folder["mode"] == 0o700, folder
    assert folder["links_to_cache"] > 50, folder
    # Per-user state in the user's home: history, and their own cache without a prelude in it.
    home = pathlib.Path(user.pw_dir)
    history = home / ".local/share/torchbook/history.jsonl"
    assert history.exists() and history.stat().st_uid == user.pw_uid
    assert CELL in history.read_text()
    own_cache = home / ".cache/torchbook"
    built = [p.name for p in own_cache.iterdir() if p.name.startswith("prelude-")] if own_cache.exists() else []
    assert built == [], f"a prelude was built in the user's cache: {built}"
    # The shared cache is exactly as it was.
    assert snapshot(CACHE) == cache_before, "the shared cache changed"
    assert not pathlib.Path(folder["path"]).exists(), "the kernel's folder is removed when it ends"


HUB_CONFIG = """
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {proxy_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.pid_file = {state!r} + "/proxy.pid"
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.JupyterHub.db_url = "sqlite:///" + {state!r} + "/hub.sqlite"
c.JupyterHub.cookie_secret_file = {state!r} + "/cookie_secret"
c.JupyterHub.pid_file = {state!r} + "/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allowed_users = {{{user!r}}}
c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.environment = {{"JUPYTER_PATH": {jupyter_path!r}, "TORCHBOOK_SPARE_ENGINE": "0"}}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.JupyterHub.services = [{{"name": "torchbook-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "torchbook-test", "services": ["torchbook-test"],
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"]}}]
"""


@pytest.fixture(scope="module")
def hub(user):
    state = tempfile.mkdtemp(prefix="tb-hub-")
    token = secrets.token_hex(16)
    proxy_port, hub_port, api_port = free_port(), free_port(), free_port()
    config = pathlib.Path(state) / "jupyterhub_config.py"
    config.write_text(HUB_CONFIG.format(
        proxy_port=proxy_port, hub_port=hub_port, api_port=api_port, chp=CHP, state=state,
        proxy_token=secrets.token_hex(16), password=secrets.token_hex(8), user=USER,
        singleuser=str(pathlib.Path(sys.executable).parent / "jupyterhub-singleuser"),
        jupyter_path=JUPYTER_PATH, token=token))
    log = open(pathlib.Path(state) / "hub.log", "w")
    process = subprocess.Popen([str(pathlib.Path(sys.executable).parent / "jupyterhub"), "-f", str(config)],
                               cwd=state, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{proxy_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (pathlib.Path(state) / "hub.log").read_text()[-6000:]
            try:
                if requests.get(f"{url}/hub/api", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (pathlib.Path(state) / "hub.log").read_text()[-6000:]
            time.sleep(0.3)
        yield {"url": url, "token": token, "log": pathlib.Path(state) / "hub.log", "process": process}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(state, ignore_errors=True)


class Channels:
    """A kernel's channels over the single-user server's websocket, through the hub's proxy."""

    def __init__(self, ws_url, token):
        self.ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=5)
        self.session = uuid.uuid4().hex

    def execute(self, code, timeout=600):
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": self.session,
                       "username": USER, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "content": {"code": code, "silent": False},
            "channel": "shell", "buffers": [],
        }))
        messages, replied, idle = [], False, False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            assert time.monotonic() < deadline, f"no reply within {timeout} s: {[m['msg_type'] for m in messages]}"
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            messages.append(msg)
            replied |= msg["msg_type"] == "execute_reply"
            idle |= msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
        return messages


def test_jupyterhub_spawns_the_users_server_and_runs_a_tch_cell(user, hub, cache_before):
    api, auth = f"{hub['url']}/hub/api", {"Authorization": f"token {hub['token']}"}
    created = requests.post(f"{api}/users/{USER}", headers=auth, timeout=10)
    assert created.status_code in (201, 409), created.text
    started = time.monotonic()
    spawn = requests.post(f"{api}/users/{USER}/server", headers=auth, timeout=200)
    assert spawn.status_code in (201, 202), spawn.text
    deadline = time.monotonic() + 200
    while True:
        model = requests.get(f"{api}/users/{USER}", headers=auth, timeout=10).json()
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            break
        assert time.monotonic() < deadline, f"{model}\n{hub['log'].read_text()[-6000:]}"
        time.sleep(0.5)
    server_ready = time.monotonic() - started
    base = f"{hub['url']}/user/{USER}"
    kernel = requests.post(f"{base}/api/kernels", json={"name": "torchbook"}, headers=auth, timeout=60)
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]
    kernel_started = time.monotonic()
    channels = Channels(f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel_id}/channels", hub["token"])
    try:
        messages = channels.execute(CELL)
        first_cell = time.monotonic()
        results = [m for m in messages if m["msg_type"] == "execute_result"]
        errors = [m["content"] for m in messages if m["msg_type"] == "error"]
        streams = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
        assert not errors and results, f"{errors}\n{streams}"
        assert "4" in results[-1]["content"]["data"]["text/plain"]
        assert "Building the torchbook prelude" not in streams
        whoami = channels.execute('std::env::var("HOME").unwrap()')
        shown = [m["content"]["data"]["text/plain"] for m in whoami if m["msg_type"] == "execute_result"]
        assert shown == [f'"{user.pw_dir}"'], shown
    finally:
        channels.ws.close()
    print(f"\nJupyterHub: {USER}'s server ready {server_ready:.1f} s after POST /users/{USER}/server; "
          f"first tch cell {first_cell - kernel_started:.1f} s after POST /api/kernels, "
          f"{first_cell - started:.1f} s from the spawn request")
    assert requests.delete(f"{base}/api/kernels/{kernel_id}", headers=auth, timeout=60).status_code == 204
    stop = requests.delete(f"{api}/users/{USER}/server", headers=auth, timeout=60)
    assert stop.status_code in (202, 204), stop.text
    deadline = time.monotonic() + 60
    while requests.get(f"{api}/users/{USER}", headers=auth, timeout=10).json().get("servers"):
        assert time.monotonic() < deadline, "the server did not stop"
        time.sleep(0.5)
    assert wait_no_processes(user.pw_uid) == [], "the user's server or kernel is still running"
    assert snapshot(CACHE) == cache_before, "the shared cache changed"
