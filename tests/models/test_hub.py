"""Released weights by name: ``load_official("Ti")`` and ``hf://`` checkpoint names, through the
Hugging Face client and its cache, against a local stand-in for the hub (never the network).

The hub tests run the loader in a subprocess: ``huggingface_hub`` reads ``HF_HOME``,
``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` when it is imported, so each setting needs a fresh
interpreter, as it would for a user."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
import torch
from test_parity import FIXTURES, ReleaseDPOT, field, fixture, needs_fixtures, perturbed, rel_l2

from dpot_lab.models import PRESETS, build_model, load_official, open_checkpoint
from dpot_lab.models.dpot import DPOTConfig
from dpot_lab.models.hub import (
    RELEASE_REPO,
    RELEASE_SIZES,
    HubFile,
    hub_file,
    published_kwargs,
)

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- a local hub
class LocalHub:
    """An HTTP server answering the hub's file requests (``HEAD``/``GET
    /{repo}/resolve/{revision}/{file}``) from ``files``, logging the paths asked for."""

    def __init__(self, files: dict[tuple[str, str], bytes]):
        self.files, self.requests = files, []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def answer(self, body: bool):
                hub.requests.append(self.path)
                owner, repo, resolve, _revision, file = (self.path.split("/", 5) + [""] * 6)[1:6]
                data = hub.files.get((f"{owner}/{repo}", file)) if resolve == "resolve" else None
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", hashlib.sha1(data).hexdigest())
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def as_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def run_python(code: str, hf_home: Path, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter with the hub settings ``env`` and the cache in
    ``hf_home``; the JSON it prints last."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    base.update(HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1", **env)
    base.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")  # the local hub
    out = subprocess.run(
        [sys.executable, "-c", code], env=base, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# In the subprocess: the golden file written by the release's own code stands in for the released
# Ti (its size is not Ti's), so the table entry for Ti is set to that file's constructor keywords.
LOAD_TI = """
import json, warnings, torch
from dpot_lab.models import PRESETS, load_official, open_checkpoint
fx = torch.load({fixture!r}, weights_only=True)
PRESETS["Ti"] = {{k: v for k, v in fx["config"].items() if k != "mixing_type"}}
result = {{}}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = load_official("Ti")
result["warnings"] = [str(w.message) for w in caught]
with torch.no_grad():
    out = model(fx["input"])
out = out[0] if isinstance(out, tuple) else out
result["err"] = float((out - fx["output"]).norm() / fx["output"].norm())
for name in ("Ti", "hf://hzk17/DPOT/model_Ti.pth"):
    opened = open_checkpoint(name)
    same = opened.state.keys() == model.state_dict().keys() and all(
        torch.equal(v, model.state_dict()[k]) for k, v in opened.state.items())
    result[name] = [opened.kind, same]
for key, name in (("missing", "S"), ("elsewhere", "hf://someone/weights@v2/sub/missing.pt")):
    try:
        load_official(name)
    except (FileNotFoundError, ValueError) as err:
        result[key] = [type(err).__name__, str(err)]
print(json.dumps(result))
"""


@needs_fixtures
def test_released_size_comes_through_the_hub_cache_and_then_offline(tmp_path):
    fx = fixture("dpot2d_full_spectrum")
    files = {(RELEASE_REPO, "model_Ti.pth"): as_bytes(fx["checkpoint"])}
    code = LOAD_TI.format(fixture=str(FIXTURES / "dpot2d_full_spectrum.pt"))
    hf_home = tmp_path / "hf"
    with LocalHub(files) as hub:
        online = run_python(code, hf_home, HF_ENDPOINT=hub.url)
        asked = list(hub.requests)
        offline = run_python(code, hf_home, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="1")
        assert hub.requests == asked  # offline: the cache only, the hub is not asked
    # through the library's own download: the release's file path on the hub, then its cache
    assert "/hzk17/DPOT/resolve/main/model_Ti.pth" in asked
    assert "/hzk17/DPOT/resolve/main/model_S.pth" in asked  # asked, and the hub has no such file
    assert list(hf_home.glob("hub/models--hzk17--DPOT/snapshots/*/model_Ti.pth"))
    for result in (online, offline):
        assert result["err"] < 1e-5
        assert result["warnings"] == []  # the table gave modes and act: nothing guessed
        assert result["Ti"] == result["hf://hzk17/DPOT/model_Ti.pth"] == ["release", True]
    kind, message = online["missing"]
    assert kind == "ValueError" and "hub repository hzk17/DPOT has no file 'model_S.pth'" in message
    kind, message = offline["missing"]  # offline and not cached: how to pre-fill the cache
    assert kind == "FileNotFoundError" and "`hf download hzk17/DPOT model_S.pth`" in message
    assert "not in the Hugging Face cache" in message and "HF_HUB_OFFLINE" in message
    # any hub file: repository, revision and path go to the library as they are
    assert "/someone/weights/resolve/v2/sub/missing.pt" in asked
    kind, message = online["elsewhere"]
    assert kind == "ValueError"
    assert "hub repository someone/weights has no file 'sub/missing.pt' at revision 'v2'" in message
    kind, message = offline["elsewhere"]
    assert kind == "FileNotFoundError"
    assert "`hf download someone/weights sub/missing.pt --revision v2`" in message


# --------------------------------------------------------------------------- names
def test_checkpoint_names():
    assert hub_file("Ti") == HubFile("hzk17/DPOT", "model_Ti.pth", None)
    assert hub_file("hf://a/b/dir/f.pt") == HubFile("a/b", "dir/f.pt", None)
    assert hub_file("hf://a/b@v1.0/f.pt") == HubFile("a/b", "f.pt", "v1.0")
    for local in ("./Ti", "ti", "runs/x/best.pt", Path("Ti")):
        assert hub_file(local) is None
    for bad in ("hf://a/f.pt", "hf://a/b/", "hf://a/b@/f.pt", "hf:///b/f.pt"):
        with pytest.raises(ValueError, match=r"expected hf://owner/repo/path/in/repo"):
            hub_file(bad)


def test_an_unknown_size_is_refused_with_the_released_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"XL does not exist.*Ti, S, M, L, H.*hf://"):
        load_official("XL")
    with pytest.raises(ValueError, match=r"unknown DPOT release size 'XL'"):
        published_kwargs("XL")


# --------------------------------------------------------------------------- the published sizes
# The paper's and the release README's figures (reference/DPOT.md): D, MLP dim, depth, n_blocks,
# out_layer_dim and the parameter count with the 12-way class head.
PUBLISHED = {
    "Ti": (512, 512, 4, 4, 32, 7.53e6),
    "S": (1024, 1024, 6, 8, 32, 30.80e6),
    "M": (1024, 4096, 12, 8, 32, 122.13e6),
    "L": (1536, 6144, 24, 16, 128, 509.0e6),
    "H": (2048, 8192, 27, 8, 128, 1031e6),
}


@pytest.mark.parametrize("size", RELEASE_SIZES)
def test_published_configuration_matches_the_release_figures(size):
    kw = published_kwargs(size)
    d, mlp, depth, n_blocks, out_dim, n_params = PUBLISHED[size]
    assert (kw["embed_dim"], kw["embed_dim"] * kw["mlp_ratio"], kw["depth"]) == (d, mlp, depth)
    assert (kw["n_blocks"], kw["out_layer_dim"]) == (n_blocks, out_dim)
    assert (kw["img_size"], kw["patch_size"], kw["modes"]) == (128, 8, 32)
    assert (kw["in_channels"], kw["out_channels"], kw["in_timesteps"]) == (4, 4, 10)
    assert (kw["out_timesteps"], kw["n_cls"], kw["normalize"]) == (1, 12, False)
    assert (kw["act"], kw["time_agg"]) == ("gelu", "exp_mlp")
    assert PRESETS[size].items() <= kw.items()  # the preset table is the one home of the sizes
    with torch.device("meta"):
        model = build_model(DPOTConfig(**kw))
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - n_params) / n_params < 0.001


def test_full_size_ti_by_name_matches_the_release_arithmetic(tmp_path, monkeypatch):
    """The real Ti table: release-named weights of full size, built by the plain transcription of
    the release's model, reach ``load_official("Ti")`` as the hub client would hand them over."""
    import huggingface_hub

    kw = published_kwargs("Ti")
    torch.manual_seed(0)
    sizes = {k: v for k, v in kw.items() if k != "act"}  # the transcription's act is GELU
    ref = perturbed(
        ReleaseDPOT(n_spatial=2, temporal_modes=8, **{**sizes, "img_size": (128, 128)}), seed=1
    )
    path = tmp_path / "model_Ti.pth"
    torch.save({"model": ref.state_dict()}, path)
    asked = []

    def hf_hub_download(repo_id, filename, revision=None):
        asked.append((repo_id, filename, revision))
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_official("Ti").eval()
        opened = open_checkpoint("Ti")  # as `dpot-lab evaluate Ti` and the rollout notebook do
        assert opened.extra == {"release_size": "Ti"}
        assert load_official(opened).config == model.config
    assert asked == [("hzk17/DPOT", "model_Ti.pth", None)] * 2
    assert model.config.mode_rule == "release" and sum(p.numel() for p in model.parameters()) == (
        sum(p.numel() for p in ref.parameters())
    )
    x = torch.randn(1, 128, 128, 10, 4)
    with torch.no_grad():
        assert rel_l2(field(model(x)), ref(x)[0]) < 1e-5
    # what init_from / finetune --from read for the same name: the same architecture
    assert opened.config == model.config
