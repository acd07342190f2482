"""SG-LoRA: aggregator algebra, CVAE fit on planted clouds, determinism, files, bad input."""

from __future__ import annotations

import pytest
import torch

from generation.flat import FlatLayout, flatten
from generation.sg_lora import Expert, SGConfig, SGLoRA, aggregate
from hub.core.errors import InvalidInputError, NotFoundError
from hub.core.provenance import ParentRef
from tests.generation.conftest import as_saved_before, toy_embed

DESCS = ["shift letters forward by one", "make every digit larger by two", "write the text in capitals"]


def test_aggregator_algebra():
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    mus, vars_ = torch.randn(5, 12, generator=g), torch.rand(5, 12, generator=g)
    q = torch.randn(8, generator=g)
    p = aggregate(q, emb, mus, vars_, k=3, tau=0.5)
    assert abs(float(p.weights.sum()) - 1) < 1e-6
    one = aggregate(q, emb, mus, vars_, k=1, tau=0.5)
    assert torch.equal(one.mu, mus[one.indices[0]]) and torch.allclose(one.var, vars_[one.indices[0]])
    assert aggregate(emb[2], emb, mus, vars_, k=3, tau=0.5).indices[0] == 2
    perm = [3, 0, 4, 1, 2]
    pp = aggregate(q, emb[perm], mus[perm], vars_[perm], k=3, tau=0.5)
    assert torch.allclose(pp.mu, p.mu, atol=1e-6) and torch.allclose(pp.var, p.var, atol=1e-6)
    # law of total variance: matches a Monte-Carlo sample of the mixture
    comp = torch.multinomial(p.weights, 200_000, replacement=True, generator=g)
    idx = torch.tensor(p.indices)[comp]
    samples = mus[idx] + vars_[idx].sqrt() * torch.randn(200_000, 12, generator=g)
    assert torch.allclose(samples.var(0), p.var, atol=2e-2)


@pytest.fixture(scope="module")
def trained(clouds):
    experts = [Expert(f"zoo/t{i}", toy_embed(DESCS[i]), snaps, ParentRef(f"zoo/t{i}", "1"))
               for i, snaps in enumerate(clouds)]
    cfg = SGConfig(k=2, tau=0.1, steps=500, lr=3e-3, train_condition="self", seed=0)
    return SGLoRA.fit(experts, cfg), experts


def test_cvae_reconstructs_and_samples_near_each_task(trained, clouds):
    gen, experts = trained
    layout = gen.layout
    for i, e in enumerate(experts):
        rec, mse = gen.reconstruct(e.snapshots[0], e.name)
        x = flatten(e.snapshots[0], layout)
        assert mse < 0.1 * float(x.var()), (e.name, mse)
        samples = gen.generate(e.embedding, seed=1, n_samples=64, sample=True)
        flats = torch.stack([flatten(s, layout) for s in samples])
        assert float((flats.mean(0) - gen.mus[i]).norm()) < 0.1 * float(gen.mus[i].norm())
        hits = sum(int(((gen.mus - f) ** 2).sum(1).argmin()) == i for f in flats)
        assert hits / len(flats) >= 0.95


def test_deterministic_lineage_and_files(trained, tmp_path):
    gen, experts = trained
    drawn = gen.generate(experts[0].embedding, seed=1, n_samples=2, sample=True)  # z ~ p(z|c), the paper's draw
    assert not drawn[0].allclose(drawn[1], atol=1e-6)
    mean = gen.generate(experts[0].embedding, seed=1, n_samples=2)  # the default: z = the prior's mean
    assert not gen.cfg.sample and mean[0].allclose(mean[1], rtol=0, atol=0)
    assert mean[0].allclose(gen.generate(experts[0].embedding, seed=9)[0], rtol=0, atol=0)  # no seed enters
    assert not drawn[0].allclose(mean[0], atol=1e-6)
    a = gen.generate(experts[0].embedding, seed=5)[0]
    b = gen.generate(experts[0].embedding, seed=5)[0]
    assert a.allclose(b, rtol=0, atol=0)
    assert a.provenance.parents[0].name == "zoo/t0" and a.provenance.parents[0].version == "1"
    gen.save(tmp_path / "g")
    again = SGLoRA.load(tmp_path / "g")
    assert again.generate(experts[0].embedding, seed=5)[0].allclose(a, atol=1e-6)
    assert [p.name for p in again.parents] == ["zoo/t0", "zoo/t1", "zoo/t2"]


def test_topk_weighted_midpoint(trained):
    gen, experts = trained
    q = experts[0].embedding + experts[1].embedding  # equidistant from t0 and t1
    gen2 = SGLoRA(gen.model, gen.layout, SGConfig(k=2, tau=0.1), gen.names, gen.embeddings, gen.mus, gen.vars,
                  gen.parents, {})
    out = flatten(gen2.topk_weighted(q), gen.layout)
    assert torch.allclose(out, (gen.mus[0] + gen.mus[1]) / 2, atol=1e-4)


def test_bad_input(trained, clouds):
    gen, experts = trained
    strict = SGLoRA(gen.model, gen.layout, SGConfig(min_similarity=0.99), gen.names, gen.embeddings, gen.mus,
                    gen.vars, gen.parents, {})
    with pytest.raises(NotFoundError, match="no similar expert adapters"):
        strict.generate(toy_embed("something entirely unrelated"))
    with pytest.raises(InvalidInputError, match="description embedding has 3 values"):
        gen.generate(torch.ones(3))
    with pytest.raises(NotFoundError):
        SGLoRA.fit([])
    with pytest.raises(InvalidInputError, match="at least 2 experts"):
        SGLoRA.fit(experts[:1])
    with pytest.raises(InvalidInputError, match="sample must be true or false"):
        SGConfig(sample="yes")
    assert isinstance(FlatLayout.of(clouds[0][0]).length, int)


def test_generators_saved_before_the_sample_setting_draw_z(trained, tmp_path):
    gen, experts = trained
    old = SGLoRA.load(as_saved_before(gen.save(tmp_path / "g"), "sample"))
    assert old.cfg.sample
    drawn = gen.generate(experts[0].embedding, seed=4, sample=True)[0]
    assert old.generate(experts[0].embedding, seed=4)[0].allclose(drawn, atol=1e-6)


def test_an_untrained_generator_decodes_the_top_k_prior_mean(trained):
    """The decoder's residual starts at zero: before any training, every latent (drawn or the prior's mean)
    decodes the semantic prior's mean, i.e. the Top-K weighted baseline."""
    _, experts = trained
    fresh = SGLoRA.fit(experts, SGConfig(k=2, tau=0.1, steps=1, lr=1e-12, seed=0))
    q = toy_embed("an unseen task description")
    want = fresh.topk_weighted(q)
    for sample in (True, False):
        assert fresh.generate(q, seed=3, sample=sample)[0].allclose(want, atol=1e-6)
