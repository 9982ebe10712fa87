"""The real Hugging Face loading path for the PolyPythias, tested offline on a hub-layout cache."""

import os

import pytest
import torch

from lmconv.checkpoints import hubcache, suites
from lmconv.checkpoints.suites import CheckpointRef
from lmconv.errors import LmconvError
from lmconv.training.profiles import ProbeSettings


@pytest.fixture(scope="module")
def hub_cache(smoke_suite, tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf-cache")
    # local seed 1 plays the original run (hub seed 0, no suffix); seed 2 stays seed 2
    repos = hubcache.build(cache, smoke_suite.source, "lmconv", ["s"], [1, 2], [0, 16, 96], seed_map={1: 0, 2: 2})
    assert repos == ["EleutherAI/pythia-s", "EleutherAI/pythia-s-seed2"]
    assert (cache / "models--EleutherAI--pythia-s" / "refs" / "step16").exists()
    return cache


def test_offline_hub_load_equals_local_load(smoke_suite, hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = suites.HubSource(cache_dir=hub_cache, known_only=False)
    x = torch.randint(0, 1024, (2, 32))
    for hub_seed, local_seed, step in ((0, 1, 16), (2, 2, 96)):
        hub_model = hub.load_model(CheckpointRef("pythia", "s", hub_seed, step))
        local_model = smoke_suite.source.load_model(CheckpointRef("lmconv", "s", local_seed, step))
        with torch.no_grad():
            assert torch.equal(hub_model(x).logits, local_model(x).logits)
    tok = hub.load_tokenizer(CheckpointRef("pythia", "s", 2, 96))
    assert tok.eos_token == "<|endoftext|>" and len(tok) == 1024
    # "main" resolves to the final step, as step143000 does on the hub
    from transformers import GPTNeoXForCausalLM

    main = GPTNeoXForCausalLM.from_pretrained("EleutherAI/pythia-s-seed2", revision="main", cache_dir=str(hub_cache))
    step96 = hub.load_model(CheckpointRef("pythia", "s", 2, 96))
    assert all(torch.equal(a, b) for a, b in zip(main.state_dict().values(), step96.state_dict().values(), strict=True))


def test_hub_errors_are_clear(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = suites.HubSource(cache_dir=hub_cache, known_only=False)
    with pytest.raises(LmconvError, match="cannot load EleutherAI/pythia-s-seed2@step32"):
        hub.load_model(CheckpointRef("pythia", "s", 2, 32))
    real = suites.HubSource()
    with pytest.raises(LmconvError, match="unknown PolyPythia size"):
        real.check(CheckpointRef("pythia", "7b", 1, 0))
    with pytest.raises(LmconvError, match="unknown PolyPythia step 999"):
        real.check(CheckpointRef("pythia", "70m", 1, 999))
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_the_engine_runs_on_the_hub_source(hub_cache, smoke_suite, monkeypatch):
    """The hub path end to end: tokenizer, probe and unigram counts from the hub tokenizer, all-pairs KL."""
    from lmconv import analysis

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = suites.HubSource(cache_dir=hub_cache, known_only=False)
    res = analysis.run_hub(["s"], [0, 2], [0, 96], probe=ProbeSettings(256, 64, 32), source=hub, progress=False)
    local = analysis.run(
        "smoke",
        sizes=["s"],
        seeds=[1, 2],
        steps=[0, 96],
        probe=ProbeSettings(256, 64, 32),
        progress=False,
    )
    hub_kl = res.pairs.groupby("step").kl.mean()
    local_kl = local.pairs.groupby("step").kl.mean()
    assert hub_kl.to_numpy() == pytest.approx(local_kl.to_numpy(), rel=1e-6)  # same checkpoints, same numbers
