"""A kernel whose prelude cache is empty builds the prelude in its first cell, as a user's first
kernel on a new machine does, and then runs tch cells with inferred variable types.

Run by `make test-prelude-cold` with TORCHBOOK_CACHE pointing at an empty folder (the build takes
minutes, so the Makefile runs it only when what the prelude is made from changed). Exits non-zero,
saying what went wrong, when the build fails or a cell's result is not the expected one.
"""

import sys

from jupyter_client.manager import start_new_kernel

CELLS = [
    # The first cell waits for the build; a `let` needs the variable's type.
    ("let t = Tensor::ones([2, 2], FLOAT_CPU);", ""),
    ("t.sum(Kind::Float).double_value(&[])", "4.0"),
]


def run(client, code):
    msg_id = client.execute(code)
    shown, streams, error = "", "", None
    while True:
        message = client.get_iopub_msg(timeout=1800)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            streams += content["text"]
        elif kind == "execute_result":
            shown = content["data"].get("text/plain", "")
        elif kind == "error":
            error = f'{content["ename"]}: {content["evalue"]}'
        elif kind == "status" and content["execution_state"] == "idle":
            return shown, streams, error


def main():
    manager, client = start_new_kernel(kernel_name="torchbook", startup_timeout=120)
    try:
        for code, expected in CELLS:
            shown, streams, error = run(client, code)
            if error or "could not be built" in streams or shown != expected:
                print(f"cold prelude through a kernel: {code!r} gave {shown!r}, error {error!r}\n{streams}")
                return 1
        print("cold prelude through a kernel: built in the first cell, tch cells ran")
        return 0
    finally:
        manager.shutdown_kernel(now=True)


if __name__ == "__main__":
    sys.exit(main())
