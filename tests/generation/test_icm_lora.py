"""ICM-LoRA: flatten round trip, architecture shapes, overfit/reconstruction, conditioning, files."""

from __future__ import annotations

import pytest
import torch

from generation.flat import FlatLayout, denormalise, flatten, normalise, tensor_stats, unflatten
from generation.icm_lora import ConvCVAE, ICMConfig, ICMLoRA, TaskSnapshots
from hub.core.errors import IncompatibleAdaptersError, InvalidInputError
from hub.core.peft_io import load_peft, save_peft
from tests.generation.conftest import as_saved_before, planted_clouds


def _mean_flat(snaps, layout):
    return torch.stack([flatten(s, layout) for s in snaps]).mean(0)


@pytest.fixture(scope="module")
def trained(clouds):
    tasks = [TaskSnapshots(f"t{i}", torch.eye(8)[i], snaps) for i, snaps in enumerate(clouds)]
    return ICMLoRA.fit(tasks, ICMConfig(depth=4, latent=16, steps=200, lr=3e-3, batch=8, seed=1, fold=16)), tasks


def test_flatten_round_trip_is_exact(clouds):
    a = clouds[0][0]
    layout = FlatLayout.of(a)
    x = flatten(a, layout)
    stats = tensor_stats(x, layout)
    back = unflatten(denormalise(normalise(x, stats, layout), stats, layout), layout)
    assert back.allclose(a, rtol=0, atol=1e-6) and back.base_model == a.base_model


@pytest.mark.parametrize(("fold", "depth"), [(1, 6), (64, 3)])
def test_architecture_shapes(fold, depth):
    cfg = ICMConfig(depth=depth, latent=32, fold=fold)
    m = ConvCVAE(4096, 8, cfg).eval()
    x, c = torch.randn(3, 4096), torch.randn(3, 8)
    mu, logvar = m.encode(x, c)
    assert mu.shape == logvar.shape == (3, 32)
    assert m.decode(mu, c).shape == (3, 4096)
    with pytest.raises(InvalidInputError, match="multiple of fold"):
        ConvCVAE(4096 + 64 * 2 ** 3, 8, ICMConfig(depth=6, fold=64))


def test_fold_keeps_neighbouring_values_together():
    """Folding puts each run of ``fold`` neighbouring values at one position (as channels), and the decoder's output
    is unfolded by the inverse: numbered values come back in order, and the decoder emits ``fold`` channels."""
    m = ConvCVAE(64, 2, ICMConfig(depth=1, latent=4, fold=8, channels=(4,))).eval()
    x = torch.arange(64.0)[None]
    folded = m._folded(x)
    assert folded.shape == (1, 8, 8) and folded[0, :, 1].tolist() == list(range(8, 16))
    assert torch.equal(m._unfolded(folded), x)
    h = m.from_latent(torch.zeros(1, 6)).view(1, 4, m.low)
    assert m.decoder(h).shape == (1, 8, 8)


def test_reconstructs_and_generates_each_task(trained, clouds):
    gen, tasks = trained
    layout = gen.layout
    means = [_mean_flat(s, layout) for s in clouds]
    for i, t in enumerate(tasks):
        _, mse = gen.reconstruct(t.snapshots[0], t.name)
        assert mse < 0.05, (t.name, mse)
        x = flatten(gen.generate(t.condition, seed=3), layout)
        dists = [float((x - m).norm()) for m in means]
        assert min(range(len(dists)), key=dists.__getitem__) == i
        assert float((x - means[i]).norm() / means[i].norm()) < 0.25


def test_deterministic_and_conditioned(trained):
    gen, tasks = trained
    a = gen.generate(tasks[0].condition, seed=7, reference="t0")
    b = gen.generate(tasks[0].condition, seed=7, reference="t0")
    c = gen.generate(tasks[1].condition, seed=7, reference="t0")
    assert a.allclose(b, rtol=0, atol=0)
    assert not a.allclose(c, atol=1e-3)
    assert a.provenance is not None and a.provenance.method == "icm_lora"


def test_save_load_and_peft_files(trained, tmp_path):
    gen, tasks = trained
    gen.save(tmp_path / "g")
    assert not list((tmp_path / "g").glob("*.bin")) and not list((tmp_path / "g").glob("*.pt"))
    again = ICMLoRA.load(tmp_path / "g")
    a, b = gen.generate(tasks[2].condition, seed=1), again.generate(tasks[2].condition, seed=1)
    assert a.allclose(b, rtol=0, atol=1e-6)
    save_peft(a, tmp_path / "peft")
    assert load_peft(tmp_path / "peft").allclose(a, atol=1e-6)


def test_bad_input(trained, clouds):
    gen, tasks = trained
    with pytest.raises(InvalidInputError, match="condition has 3 values"):
        gen.generate(torch.ones(3))
    with pytest.raises(InvalidInputError, match="center must be true or false"):
        ICMConfig(center=1)
    with pytest.raises(InvalidInputError, match="no LoRA snapshots"):
        ICMLoRA.fit([TaskSnapshots("x", torch.ones(8), [])])
    other = planted_clouds(1, 1, dim=12)[0]
    with pytest.raises(IncompatibleAdaptersError):
        ICMLoRA.fit([TaskSnapshots("a", torch.ones(8), clouds[0][:1]), TaskSnapshots("b", torch.zeros(8), other)])


def test_centered_generator_starts_at_the_snapshot_mean_and_keeps_it_in_its_files(clouds, tmp_path):
    """``center=True``: the decoder models a residual over the training snapshots' normalised mean and starts at
    zero, so before training it decodes that mean (denormalised with the reference task's statistics); trained,
    it still reconstructs and tells the tasks apart, and the mean travels with the saved generator."""
    tasks = [TaskSnapshots(f"t{i}", torch.eye(8)[i], snaps) for i, snaps in enumerate(clouds)]
    untrained = ICMLoRA.fit(tasks, ICMConfig(depth=4, latent=16, steps=1, lr=1e-9, batch=8, seed=1, center=True, fold=16))
    layout = untrained.layout
    normed = [normalise(flatten(s, layout), tensor_stats(flatten(s, layout), layout), layout)
              for snaps in clouds for s in snaps]
    want = denormalise(torch.stack(normed).mean(0), untrained.ref_stats[0], layout)
    got = flatten(untrained.generate(tasks[0].condition, reference="t0", sample=False), layout)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    gen = ICMLoRA.fit(tasks, ICMConfig(depth=4, latent=16, steps=200, lr=3e-3, batch=8, seed=1, center=True, fold=16))
    means = [_mean_flat(s, layout) for s in clouds]
    for i, t in enumerate(tasks):
        assert gen.reconstruct(t.snapshots[0], t.name)[1] < 0.05
        x = flatten(gen.generate(t.condition, seed=3), layout)
        assert min(range(len(means)), key=lambda j: float((x - means[j]).norm())) == i
    gen.save(tmp_path / "g")
    again = ICMLoRA.load(tmp_path / "g")
    assert torch.equal(again.center, gen.center) and again.cfg.center
    assert again.generate(tasks[1].condition, seed=2).allclose(gen.generate(tasks[1].condition, seed=2), atol=1e-6)


def test_generators_saved_before_centering_decode_whole_vectors(trained, tmp_path):
    gen, tasks = trained
    old = ICMLoRA.load(as_saved_before(gen.save(tmp_path / "g"), "center", tensor="center"))
    assert not old.cfg.center and not old.center.any()


def test_folded_cvae_regenerates_many_tasks_closer_than_the_single_channel_one():
    """Ten tasks of L = 4096 at 300 steps: the folded CVAE (fold 64, 128 channels) regenerates every task within 5%
    of its snapshot mean (relative Frobenius), the released code's single channel (fold 1, 6 stages) stays above
    5% for every task (measured 2.5-4.0% vs 6.7-7.7%). Fails if folding stops giving the decoder its capacity."""
    clouds = planted_clouds(10, 3, dim=128, r=8, seed=3)
    tasks = [TaskSnapshots(f"t{i}", torch.eye(10)[i], s) for i, s in enumerate(clouds)]

    def errors(**shape):
        gen = ICMLoRA.fit(tasks, ICMConfig(latent=16, steps=300, lr=3e-3, batch=8, seed=1, **shape))
        out = []
        for t, snaps in zip(tasks, clouds, strict=True):
            mean = _mean_flat(snaps, gen.layout)
            x = flatten(gen.generate(t.condition, seed=0, sample=False), gen.layout)
            out.append(float((x - mean).norm() / mean.norm()))
        return out

    folded, single = errors(fold=64, depth=3), errors(fold=1, depth=6)
    assert max(folded) < 0.05, folded
    assert min(single) > 0.05, single


def test_conditions_keep_their_geometry_with_one_global_scale(clouds, tmp_path):
    """``cond_scale="global"`` (default) centres the conditions and divides them by one number, so the decoder reads
    the same angles and distance ratios as the embedding space; ``"dim"`` z-scores each dimension (a dimension in
    which the training tasks agree is blown up). Generators saved before the setting load as ``"dim"``."""
    conds = [torch.tensor([1.0, 0.0, 0.01]), torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 0.02])]
    tasks = [TaskSnapshots(f"t{i}", c, snaps[:2]) for i, (c, snaps) in enumerate(zip(conds, clouds, strict=True))]
    shape = {"depth": 4, "latent": 8, "steps": 1, "fold": 16}
    new = torch.tensor([0.5, 0.5, 0.1])
    scaled = {k: ICMLoRA.fit(tasks, ICMConfig(cond_scale=k, **shape)) for k in ("global", "dim")}
    mean = torch.stack(conds).mean(0)
    ratio = scaled["global"]._cond(new)[0] / (new - mean)
    torch.testing.assert_close(ratio, torch.full((3,), float(ratio[0])))  # one scale for every dimension
    dim = scaled["dim"]._cond(new)[0]
    assert float(dim[2].abs()) > 5 * float(dim[0].abs())  # the near-constant third dimension dominates
    old = ICMLoRA.load(as_saved_before(scaled["dim"].save(tmp_path / "g"), "cond_scale"))
    assert old.cfg.cond_scale == "dim" and torch.equal(old.cond_std, scaled["dim"].cond_std)
    with pytest.raises(InvalidInputError, match="cond_scale must be 'global' or 'dim'"):
        ICMConfig(cond_scale="pca")


def test_generated_adapters_fit_their_tasks_almost_as_well_as_the_trained_ones():
    """The spec's functional check on a toy regression ``y = (W + s B A) x + noise``: three tasks with their own
    rank-4 deltas, LoRA snapshots from a shared A init (as the testbed's), one ICM generator over all of them.
    The adapter generated for each task has a loss <= 1.2x the trained adapter's (measured 1.06-1.15x) and far below
    the base's (0.02-0.03x); another task's condition does not fit it."""
    from hub.core.adapter import LoraAdapter, LoraLayer, LoraSpec

    g = torch.Generator().manual_seed(5)
    dim, r, mod = 32, 4, "model.layers.0.mlp.down_proj"
    w0 = torch.randn((dim, dim), generator=g) / dim ** 0.5
    x = torch.randn((256, dim), generator=g)
    a_init = torch.randn((r, dim), generator=g) / dim ** 0.5
    tasks, data = [], []
    for t in range(3):
        delta = torch.randn((dim, r), generator=g) @ torch.randn((r, dim), generator=g) / dim ** 0.5
        y = x @ (w0 + delta).T + 0.3 * torch.randn((256, dim), generator=g)
        a, b = a_init.clone().requires_grad_(), torch.zeros((dim, r), requires_grad=True)
        opt = torch.optim.Adam([a, b], lr=2e-2)
        snaps = []
        for step in range(400):
            loss = ((x @ (w0 + b @ a).T - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step >= 360 and step % 10 == 9:
                layer = LoraLayer(a=a.detach().clone(), b=b.detach().clone() / 2.0, alpha=8.0)  # scaling 8/4 = 2
                snaps.append(LoraAdapter(layers={mod: layer}, spec=LoraSpec(base_model="loom-test/toy")))
        tasks.append(TaskSnapshots(f"t{t}", torch.eye(3)[t], snaps))
        data.append(y)

    def loss_of(adapter, y):
        la = adapter.layers[mod]
        return float(((x @ (w0 + la.alpha / la.rank * la.b @ la.a).T - y) ** 2).mean())

    gen = ICMLoRA.fit(tasks, ICMConfig(depth=4, latent=8, steps=400, lr=3e-3, batch=8, seed=1, fold=16))
    for t, y in zip(tasks, data, strict=True):
        trained, made = loss_of(t.snapshots[-1], y), loss_of(gen.generate(t.condition, seed=0), y)
        base = float(((x @ w0.T - y) ** 2).mean())
        assert made <= 1.2 * trained and made < 0.2 * base, (t.name, made, trained, base)
        other = loss_of(gen.generate(tasks[(int(t.name[1]) + 1) % 3].condition, seed=0), y)
        assert other > 5 * trained, (t.name, other, trained)  # another task's condition gives another fit
