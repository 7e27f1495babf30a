"""A real `chatlm serve` process on a loopback port, for the tests driven by the official
`openai` client. The binary is $CHATLM_BIN (default: the workspace's debug build), the model
$CHATLM_SMOLLM2 (the default SmolLM2-135M-Instruct Q4_1 GGUF, fetched by scripts/test)."""

import os
import pathlib
import subprocess
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[4]
API_KEY = "test-key"


def binary():
    return os.environ.get("CHATLM_BIN") or str(ROOT / "target" / "debug" / "chatlm")


def model_path():
    path = os.environ.get("CHATLM_SMOLLM2", "")
    if not path or not os.path.isfile(path):
        pytest.skip("skipped: fixtures not found (CHATLM_SMOLLM2, the default model)")
    return path


class Server:
    def __init__(self, *extra):
        args = [binary(), "serve", "--model", model_path(), "--port", "0", "--threads", "2",
                "--api-key", API_KEY, *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"chatlm serve did not start: {line!r} {''.join(self.stderr)}")
        self.url = line.split()[-1]

    def client(self, **kw):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=kw.pop("api_key", API_KEY), max_retries=0, **kw)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def server():
    s = Server("--parallel", "4", "--ctx-size", "2048")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def client(server):
    return server.client()


@pytest.fixture(scope="session")
def model_file():
    return model_path()
