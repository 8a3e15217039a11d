from harness.storage.artifacts import ArtifactStore, config_hash


def test_cache_miss_then_hit(tmp_path):
    store, calls = ArtifactStore(tmp_path), []

    def build(out):
        calls.append(out)
        (out / "data.txt").write_text("x")
        return {"gen_tokens": 3}

    p1, meta1, hit1 = store.get_or_build("bank", {"k": 8, "seed": 0}, build)
    p2, meta2, hit2 = store.get_or_build("bank", {"seed": 0, "k": 8}, build)  # same spec, other key order
    p3, _, hit3 = store.get_or_build("bank", {"k": 4, "seed": 0}, build)
    assert (hit1, hit2, hit3) == (False, True, False)
    assert p1 == p2 != p3 and len(calls) == 2
    assert (p1 / "data.txt").read_text() == "x" and meta2["gen_tokens"] == 3 and "wall_s" in meta2
    assert not list(tmp_path.glob("*.tmp"))


def test_failed_build_leaves_no_artifact(tmp_path):
    store = ArtifactStore(tmp_path)

    def boom(out):
        raise RuntimeError("killed")

    try:
        store.get_or_build("bank", {"k": 1}, boom)
    except RuntimeError:
        pass
    _, _, hit = store.get_or_build("bank", {"k": 1}, lambda out: {})
    assert not hit


def test_hash_depends_on_values():
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
