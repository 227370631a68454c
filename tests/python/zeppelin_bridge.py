"""A model of Apache Zeppelin's Jupyter interpreter bridge, for tests: what a Zeppelin paragraph
shows for a kernel's messages. Two halves, as in Zeppelin (0.11/0.12):

- the Python gRPC server (`kernel_server.py`) turns each iopub message into one typed output:
  stream → TEXT; display_data / execute_result → the first of text/html (HTML), image/jpeg,
  image/png (IMG), text/plain (TEXT); error → its traceback joined by newlines, as TEXT with
  status ERROR; clear_output → CLEAR; update_display_data and everything else are dropped;
  then the text/plain of the execute_reply's payloads;
- the Java client (`JupyterKernelClient.stream_execute`) writes them into the paragraph's
  output: TEXT starting with `%` as it is (so `%table …` makes a table), other TEXT after a
  `%text ` when the current result is neither TEXT nor HTML, HTML as `\\n%html …`, images as
  `\\n%img …`; Zeppelin's InterpreterOutput starts a new result at each display-system magic
  (`%text `, `%html `, `%table `, `%img ` …) found at the start of a line or of a write.
"""

import re

from jupyter_client import KernelManager

MAGIC = re.compile(r"%(text|html|table|img|svg|angular|markdown|network) ")


class Paragraph:
    """The results a paragraph shows: a list of [TYPE, text], and its final status."""

    def __init__(self):
        self.results = []
        self.status = "SUCCESS"
        self._line_start = True

    def _write(self, data):
        i, write_start = 0, True
        while i < len(data):
            if self._line_start or write_start:
                m = MAGIC.match(data, i)
                if m:
                    self.results.append([m.group(1).upper(), ""])
                    i = m.end()
                    self._line_start = write_start = False
                    continue
            write_start = False
            if not self.results:
                self.results.append(["TEXT", ""])
            self.results[-1][1] += data[i]
            self._line_start = data[i] == "\n"
            i += 1

    def receive(self, out_type, output, error=False):
        """One ExecuteResponse from the gRPC server, written as the Java client writes it."""
        if error:
            self.status = "ERROR"
        if out_type == "TEXT":
            if output.startswith("%"):
                self._write(output)
            else:
                current = self.results[-1][0] if self.results else None
                if current is not None and current not in ("HTML", "TEXT"):
                    self._write("%text ")
                self._write(output)
        elif out_type == "IMG":
            self._write("\n%img " + output)
        elif out_type == "HTML":
            self._write("\n%html " + output)
        elif out_type == "CLEAR":
            self.results, self._line_start = [], True

    def of_type(self, kind):
        return [text for t, text in self.results if t == kind]


def output_of(msg):
    """kernel_server.py's choice for one iopub message: (type, text, is_error) or None."""
    kind, content = msg["header"]["msg_type"], msg["content"]
    if kind == "stream":
        return "TEXT", content["text"], False
    if kind in ("display_data", "execute_result"):
        data = content["data"]
        for mime, out_type in [("text/html", "HTML"), ("image/jpeg", "IMG"), ("image/png", "IMG"), ("text/plain", "TEXT")]:
            if mime in data:
                return out_type, data[mime], False
        return None
    if kind == "error":
        return "TEXT", "\n".join(content["traceback"]), True
    if kind == "clear_output":
        return "CLEAR", "", False
    return None


class ZeppelinBridge:
    """A torchbook kernel started and driven as Zeppelin's bridge does (jupyter_client's
    `execute_interactive` with an output hook), in an environment like Zeppelin's."""

    def __init__(self, env):
        self.km = KernelManager(kernel_name="torchbook")
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code, timeout=600):
        paragraph = Paragraph()

        def hook(msg):
            out = output_of(msg)
            if out is not None:
                paragraph.receive(out[0], out[1], error=out[2])

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        texts = [p["data"]["text/plain"] for p in reply["content"].get("payload", []) if p.get("data", {}).get("text/plain")]
        if texts:
            paragraph.receive("TEXT", "\n".join(texts))
        return paragraph

    def close(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
