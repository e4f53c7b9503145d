import json

from soarlite import checkpoint


def _stage(run, version):
    s = checkpoint.begin(run)
    (s / "adapters" / "teacher").mkdir(parents=True)
    (s / "adapters" / "teacher" / "w").write_text(version)
    (s / "metrics.jsonl").write_text(version + "\n")
    (s / "state.json").write_text(json.dumps({"step": int(version)}))
    return s


def _read(run):
    return ((run / "adapters" / "teacher" / "w").read_text(), (run / "metrics.jsonl").read_text(),
            json.loads((run / "state.json").read_text())["step"])


def test_commit_replaces_everything(tmp_path):
    _stage(tmp_path, "1")
    checkpoint.commit(tmp_path)
    _stage(tmp_path, "2")
    checkpoint.commit(tmp_path)
    assert _read(tmp_path) == ("2", "2\n", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapters", "metrics.jsonl", "state.json"]


def test_unsealed_checkpoint_is_dropped(tmp_path):
    _stage(tmp_path, "1")
    checkpoint.commit(tmp_path)
    _stage(tmp_path, "2")  # killed before COMPLETE
    checkpoint.recover(tmp_path)
    assert _read(tmp_path) == ("1", "1\n", 1)
    assert not (tmp_path / checkpoint.NEXT).exists()


def test_sealed_checkpoint_half_moved_is_finished(tmp_path):
    _stage(tmp_path, "1")
    checkpoint.commit(tmp_path)
    s = _stage(tmp_path, "2")
    (s / "COMPLETE").write_text("")
    # killed after moving adapters aside but before moving the new ones in
    trash = tmp_path / checkpoint.TRASH
    trash.mkdir()
    (tmp_path / "adapters").rename(trash / "adapters")
    checkpoint.recover(tmp_path)
    assert _read(tmp_path) == ("2", "2\n", 2)
    assert not trash.exists()


def test_atomic_text_write(tmp_path):
    p = tmp_path / "a.json"
    checkpoint.write_json_atomic(p, {"x": 1})
    assert json.loads(p.read_text()) == {"x": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["a.json"]
