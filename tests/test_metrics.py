"""Metrics against brute force, known values and invariants."""

import numpy as np
import pytest
import torch

from lmconv.metrics import cka, kl, rank, spectrum
from lmconv.training import neox


def random_logp(s=5, n=64, v=512, spread=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, v, generator=g) * 2
    return torch.log_softmax((base + spread * torch.randn(s, n, v, generator=g)).double(), -1)


@pytest.mark.parametrize("spread", [0.001, 0.3, 3.0])
def test_all_pairs_kl_matches_brute_force(spread):
    lp = random_logp(spread=spread)
    fast = kl.all_pairs_kl(lp)
    s, n, _ = lp.shape
    ref = torch.zeros(s, s, n, dtype=torch.float64)
    p = lp.exp()
    for i in range(s):
        for j in range(s):
            for t in range(n):  # the definition, one token at a time
                ref[i, j, t] = (p[i, t] * (lp[i, t] - lp[j, t])).sum()
    off = ~torch.eye(s, dtype=bool)
    rel = ((fast - ref).abs() / ref.abs())[off]
    assert float(rel.max()) < 1e-5
    assert torch.allclose(kl.pairwise_kl_loop(lp)[off], ref[off], rtol=1e-9)  # the anchor's loop agrees too


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_block_statistics_match_their_definitions(dtype):
    """The engine's one-product statistics (entropy from the product's diagonal in float64) against the
    per-token definitions, in float64 and, from float32 log-probs, to 1e-5 relative."""
    lp = random_logp(spread=0.05).to(dtype)
    lp64 = lp.double()  # the reference sees exactly the values the tested path sees
    target = torch.randint(0, lp.shape[-1], (lp.shape[1],), generator=torch.Generator().manual_seed(1))
    ref = kl.unigram_logprobs(np.arange(lp.shape[-1]) % 7)
    got = kl.block_statistics(lp, target, ref)
    p = lp64.exp()
    ent = -(p * lp64).sum(-1)
    want = {
        "surprisal": -lp64[:, torch.arange(lp.shape[1]), target],
        "entropy": ent,
        "kl_uniform": np.log(lp.shape[-1]) - ent,
        "kl_unigram": (p * (lp64 - ref.double())).sum(-1),
        "pairs": (p[:, None] * (lp64[:, None] - lp64[None, :])).sum(-1),
    }
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for key, w in want.items():
        g = got[key].double()
        off = ~torch.eye(lp.shape[0], dtype=bool) if key == "pairs" else slice(None)
        assert float(((g - w).abs() / w.abs().clamp_min(1e-3))[off].max()) < tol, key


def test_kl_of_a_distribution_with_itself_is_zero_and_kl_is_nonnegative():
    lp = random_logp()
    same = torch.stack([lp[0], lp[0], lp[1]])
    out = kl.all_pairs_kl(same)
    assert float(out[0, 1].abs().max()) < 1e-12 and float(out[1, 0].abs().max()) < 1e-12
    assert float(out.min()) >= 0
    assert float(out[0, 2].min()) > 0


def test_kl_to_uniform_and_unigram():
    lp = random_logp(s=1)[0]
    v = lp.shape[-1]
    uni = torch.full((v,), -np.log(v), dtype=torch.float64)
    assert torch.allclose(kl.kl_to_uniform(lp), kl.kl_to(lp, uni))
    counts = np.zeros(v)
    counts[:3] = [10, 0, 5]
    u = kl.unigram_logprobs(counts, smoothing=0.5)
    assert torch.isfinite(u).all() and abs(float(u.exp().sum()) - 1) < 1e-6
    assert float(u[0]) > float(u[2]) > float(u[1])


def test_cka_identities_and_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    y = x @ rng.normal(size=(16, 24)) + 0.7 * rng.normal(size=(200, 24))
    q, _ = np.linalg.qr(rng.normal(size=(24, 24)))
    for debiased in (False, True):
        assert cka.cka(x, x, debiased) == pytest.approx(1.0)
        base = cka.cka(x, y, debiased)
        assert cka.cka(x, y @ q, debiased) == pytest.approx(base)  # orthogonal transform
        assert cka.cka(x, 3.7 * y, debiased) == pytest.approx(base)  # isotropic scaling
        assert cka.cka(x + 5.0, y, debiased) == pytest.approx(base)  # centring
        assert cka.cka(x, y, debiased) == pytest.approx(cka.cka_gram(x, y, debiased))  # direct HSIC
    assert 0 < cka.cka(x, y) < 1
    z = rng.normal(size=(200, 24))
    assert cka.cka(x, z, debiased=True) == pytest.approx(0, abs=0.05)
    assert cka.cka(x, z) > cka.cka(x, z, debiased=True)  # the biased estimator is biased upwards


def test_effective_rank_of_known_spectra():
    assert rank.effective_rank(np.ones(8)) == pytest.approx(8.0)
    assert rank.proportional_effective_rank(np.ones(8), 8) == pytest.approx(1.0)
    assert rank.effective_rank([5.0, 0, 0, 0]) == pytest.approx(1.0)
    assert rank.effective_rank(np.linalg.svd(np.eye(6))[1]) == pytest.approx(6.0)
    assert rank.effective_rank([3.0, 1.0]) == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))
    assert rank.effective_rank([4, 3, 2, 1], k=2) == pytest.approx(rank.effective_rank([4, 3]))


def test_singular_distribution_and_scale_invariance():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(12, 8))
    sv = spectrum.singular_values(w)
    d = spectrum.distribution(sv)
    assert d.sum() == pytest.approx(1.0) and np.all(np.diff(d) <= 0)
    assert spectrum.distribution([2.0, 1.0, 1.0]) == pytest.approx([0.5, 0.25, 0.25])
    assert spectrum.delta_sigma(sv, spectrum.singular_values(3.0 * w)) == pytest.approx(0, abs=1e-12)
    assert spectrum.delta_sigma(sv, spectrum.singular_values(w @ np.diag(np.arange(1, 9)))) > 0.01
    n = spectrum.norms(sv)
    assert n["fro"] == pytest.approx(np.linalg.norm(w)) and n["spectral"] == pytest.approx(np.linalg.norm(w, 2))
    assert n["nuclear"] == pytest.approx(np.linalg.norm(w, "nuc"))


def test_the_bound_holds_on_random_perturbations():
    rng = np.random.default_rng(2)
    for _ in range(50):
        w = rng.normal(size=(16, 10)) * rng.uniform(0.1, 10)
        dw = rng.normal(size=(16, 10)) * rng.uniform(1e-4, 1.0)
        ds = spectrum.delta_sigma(spectrum.singular_values(w), spectrum.singular_values(w + dw))
        b = spectrum.bound(spectrum.singular_values(dw), spectrum.singular_values(w + dw))
        assert ds <= b + 1e-12


def test_spectra_deltas_index_by_later_step_and_give_rates():
    vals = np.array([[3.0, 1.0], [3.0, 1.0], [2.0, 2.0]])
    d, rate = spectrum.spectra_deltas(np.array([0, 1, 5]), vals)
    assert d[0] == pytest.approx(0) and d[1] == pytest.approx(np.sqrt(2) * 0.25)
    assert rate[1] == pytest.approx(d[1] / 4)


def test_qkv_split_reproduces_the_models_attention():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(
        vocab_size=64,
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=3,
        intermediate_size=96,
        max_position_embeddings=16,
        rotary_pct=0.25,
        attn_implementation="eager",
    )
    model = GPTNeoXForCausalLM(cfg).eval()
    attn = model.gpt_neox.layers[0].attention
    heads, hd, d = 3, 8, 24
    x = torch.randn(1, 5, d)
    cos, sin = model.gpt_neox.rotary_emb(x, torch.arange(5)[None])
    with torch.no_grad():
        out_module = attn(x, attention_mask=None, position_embeddings=(cos, sin))[0]
        wq, wk, wv = neox.split_qkv(attn.query_key_value.weight, heads)
        bq, bk, bv = neox.split_qkv(attn.query_key_value.bias, heads)
        q = (x @ wq.T + bq).view(1, 5, heads, hd).transpose(1, 2)
        k = (x @ wk.T + bk).view(1, 5, heads, hd).transpose(1, 2)
        v = (x @ wv.T + bv).view(1, 5, heads, hd).transpose(1, 2)
        rot = int(hd * 0.25)

        def rope(t):
            c, s = cos[:, None, :, :rot], sin[:, None, :, :rot]
            tr, tp = t[..., :rot], t[..., rot:]
            half = torch.cat([-tr[..., rot // 2 :], tr[..., : rot // 2]], -1)
            return torch.cat([tr * c + half * s, tp], -1)

        q, k = rope(q), rope(k)
        scores = (q @ k.transpose(-1, -2)) / hd**0.5
        # attention_mask=None: the module attends to every position, so the manual version does too
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, 5, d)
        out_manual = attn.dense(ctx)
    assert torch.allclose(out_module, out_manual, atol=1e-5)
    # the paper's "last third" is not V: it mixes the q/k/v rows of the last heads
    assert not torch.allclose(neox.last_third(attn.query_key_value.weight), wv)


def test_ov_circuits_per_head_sum_to_the_layer():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    model = GPTNeoXForCausalLM(cfg)
    whole, heads = neox.ov_circuits(model.gpt_neox.layers[0], 4)
    assert torch.allclose(whole, sum(heads), atol=1e-6)
    assert all(torch.linalg.matrix_rank(h) <= 4 for h in heads)


def test_cka_against_a_cached_reference_equals_the_direct_estimators():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(150, 12))
    ref = cka.Reference(y)
    for _ in range(3):
        x = y @ rng.normal(size=(12, 9)) + rng.normal(size=(150, 9))
        biased, debiased = cka.cka_both(x, ref)
        assert biased == pytest.approx(cka.cka(x, y)) and debiased == pytest.approx(cka.cka(x, y, debiased=True))


def test_low_rank_singular_values_match_the_full_product():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(48, 6, generator=g), torch.randn(6, 48, generator=g)
    full = torch.linalg.svdvals(a @ b)[:6].double().numpy()
    assert rank.low_rank_singular_values(a, b) == pytest.approx(full, rel=1e-4)
