"""The shipped π_ref family (harness/pipeline/family.py, docs/design.md §10): found by its recipe, its weights checked, used
by the default job, rebuilt from its recipe into the family's band."""
import json
import shutil

import pytest

from harness.config.compose import compose
from harness.errors import UserError
from harness.pipeline import family
from harness.pipeline.stages import check_draw, load_task, run_spec, shipped_ref
from harness.pipeline.warm_start import recipe
from harness.registry import make_algo
from tests.conftest import ROOT, run_cli

SHIPPED = sorted(family.ROOT.glob("*/draw-*/manifest.json"))


def _fake_family(tmp_path, cfg, draws=(0, 1)):
    """A family folder whose manifests carry ``cfg``'s recipe (weights: any bytes, hashed)."""
    rec = recipe(cfg, load_task(cfg.task)[0])
    for d in draws:
        path = tmp_path / "fam" / f"draw-{d}"
        path.mkdir(parents=True)
        (path / family.WEIGHTS).write_bytes(bytes([d]) * 64)
        (path / family.MANIFEST).write_text(json.dumps({
            "draw": d, "sha256": family.sha256(path / family.WEIGHTS), "recipe": rec,
            "recipe_hash": family.recipe_hash(rec)}))
    return tmp_path


def test_a_draw_is_found_by_its_recipe_and_its_weights_are_checked(tmp_path):
    cfg = compose(["model.warm_start_steps=7"])
    root = _fake_family(tmp_path, cfg)
    rec = recipe(cfg, load_task(cfg.task)[0])
    assert family.find(rec, 1, root).draw == 1 and family.find(rec, 2, root) is None
    assert family.find(rec, 0, root).key.startswith("family-fam-draw0-")
    # what does not change π_ref's weights keeps the recipe: the test split, the algorithm's training, lora, dtype
    same = compose(["model.warm_start_steps=7", "task.n_test=40", "task.test_max_steps=9", "train.lr_schedule=linear",
                    "model.dtype=bfloat16", "model.max_new_tokens=32", "warm_start.draw=1", "algo=dpo"])
    assert recipe(same, load_task(same.task)[0]) == rec
    other = compose(["model.warm_start_steps=8"])
    assert family.find(recipe(other, load_task(other.task)[0]), 0, root) is None
    assert "warm_start.steps=8 (family: 7)" in family.difference(recipe(other, load_task(other.task)[0]), root)
    (root / "fam" / "draw-0" / family.WEIGHTS).write_bytes(b"edited")
    with pytest.raises(UserError, match="is not the file its manifest names"):
        family.find(rec, 0, root)


def test_a_run_key_names_the_shipped_weights_and_the_draw_is_no_variant(tmp_path):
    cfg = compose(["model.warm_start_steps=7", f"warm_start.family_dir={_fake_family(tmp_path, compose(['model.warm_start_steps=7'])) / 'fam'}"])
    algo = make_algo(cfg.algo)
    spec = run_spec(cfg, algo)
    assert spec["ref"] == shipped_ref(cfg).sha256
    other_draw = compose([*(f"{k}={v}" for k, v in [("model.warm_start_steps", 7),
                                                  ("warm_start.family_dir", cfg.warm_start.family_dir)]),
                          "warm_start.draw=1"])
    from harness.config.variants import variant_id

    spec1 = run_spec(other_draw, algo)
    assert spec1["ref"] != spec["ref"]  # other weights: other runs (the run key hashes the whole spec)
    assert variant_id(spec1) == variant_id(spec)  # but the same row: the draw is a factor of the report
    rebuilt = compose(["model.warm_start_steps=7", f"warm_start.family_dir={cfg.warm_start.family_dir}",
                       "warm_start.rebuild=true"])
    assert run_spec(rebuilt, algo)["ref"] is None and variant_id(run_spec(rebuilt, algo)) != variant_id(spec)


def test_a_draw_the_family_lacks_stops_before_any_work(tmp_path):
    """Not a silent ~25-minute build: a draw the matching family does not ship needs warm_start.rebuild=true, a
    family folder must hold draws, and a broken manifest is named."""
    fam = _fake_family(tmp_path, compose(["model.warm_start_steps=7"])) / "fam"
    common = ["model.warm_start_steps=7", f"warm_start.family_dir={fam}"]
    cfg = compose([*common, "warm_start.draw=2"])
    with pytest.raises(UserError, match=r"warm_start.draw=2: family fam ships draws 0, 1; .*warm_start.rebuild=true"):
        check_draw(cfg, load_task(cfg.task)[0])
    missing = compose(["model.warm_start_steps=7", f"warm_start.family_dir={tmp_path / 'nowhere'}"])
    with pytest.raises(UserError, match=r"warm_start.family_dir=.*nowhere: no π_ref draws there"):
        check_draw(missing, load_task(missing.task)[0])
    manifest = fam / "draw-1" / family.MANIFEST
    good = manifest.read_text()
    manifest.write_text("{broken")
    with pytest.raises(UserError, match=r"draw-1/manifest.json is not valid JSON"):
        check_draw(cfg, load_task(cfg.task)[0])
    manifest.write_text(good)
    for ok in (["warm_start.draw=1"], ["warm_start.draw=2", "warm_start.rebuild=true"],
               ["warm_start.draw=2", "model.warm_start_steps=8"]):  # another recipe builds its own π_ref, as before
        cfg = compose([*common, *ok])
        check_draw(cfg, load_task(cfg.task)[0])


@pytest.mark.skipif(not SHIPPED, reason="no family shipped")
def test_the_default_job_starts_from_shipped_draw_0():
    """A change of the defaults that changes π_ref's recipe would silently make every job train its own π_ref:
    the shipped family must stay the defaults' family."""
    cfg = compose([])
    draw = shipped_ref(cfg)
    assert draw is not None and draw.draw == 0, family.difference(recipe(cfg, load_task(cfg.task)[0]))
    members = family.members(recipe(cfg, load_task(cfg.task)[0]))
    assert len(members) >= 5 and sorted(d.draw for d in members) == list(range(len(members)))
    assert sum(f.stat().st_size for d in members for f in d.path.iterdir()) < 25e6
    for d in members:
        d.check()
        m = d.manifest
        assert m["commit"] and m["command"].startswith("python -m harness.build_family")
        assert {"greedy", "pass_at_8", "bank_frac_prompts_mixed", "accuracy_by_length"} <= set(m["figures"])


@pytest.mark.slow
def test_build_family_then_a_job_loads_its_draws(tmp_path, smoke_overrides):
    """`harness.build_family` makes draws with manifests; a job with that recipe loads them (no warm start of its
    own) and records which; another recipe builds its own π_ref and says why."""
    out = tmp_path / "fam"
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "harness.build_family", "draws=0,1", f"out={out}", *smoke_overrides],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((out / family.FAMILY).read_text())
    assert set(summary["draws"]) == {"0", "1"} and summary["band"][0] <= summary["greedy_mean"] <= summary["band"][1]
    common = [*smoke_overrides, f"results_dir={tmp_path / 'r'}", f"warm_start.family_dir={out}", "algo=sft"]
    res = run_cli([*common, "warm_start.draw=1"])
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert "shipped π_ref" in log and "building draw" not in log
    rec = [json.loads(p.read_text()) for p in (tmp_path / "r" / "runs").glob("*/metrics.json")]
    assert {r["ref_source"] for r in rec} == {"shipped"} and {r["ref_draw"] for r in rec} == {1}
    assert {r["ref_sha256"] for r in rec} == {summary["draws"]["1"]["sha256"]}
    res = run_cli([*[o for o in common if not o.startswith("warm_start.lr=")], "warm_start.lr=0.001"])
    log = res.stdout + res.stderr
    assert res.returncode == 0 and "no shipped π_ref for these settings" in log and "warm_start.lr=0.001" in log


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="no family shipped")
def test_a_rebuilt_draw_lands_in_the_familys_band(tmp_path):
    """Draw 0 trained here from its recipe: its greedy accuracy within the shipped family's band."""
    import subprocess
    import sys

    root = shipped_ref(compose([])).path.parent
    res = subprocess.run([sys.executable, "-m", "harness.build_family", "draws=0", f"out={tmp_path / 'fam'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert res.returncode == 0, res.stderr[-3000:]
    band = json.loads((root / family.FAMILY).read_text())["band"]
    rebuilt = json.loads((tmp_path / "fam" / "draw-0" / family.MANIFEST).read_text())
    assert rebuilt["recipe_hash"] == json.loads((root / family.FAMILY).read_text())["recipe_hash"]
    assert band[0] <= rebuilt["figures"]["greedy"] <= band[1], (rebuilt["figures"], band)
    shutil.rmtree(tmp_path / "fam", ignore_errors=True)
