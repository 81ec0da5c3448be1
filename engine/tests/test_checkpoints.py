"""Checkpoint folders: only complete ones count; stale ones from another timeline are cleared."""

from engine.checkpoints import checkpoints_dir, prune_checkpoints, remove_stale, step_checkpoints


def make_folders(output_dir, names, complete=True):
    for name in names:
        folder = checkpoints_dir(output_dir) / name
        folder.mkdir(parents=True)
        if complete:
            (folder / "complete").write_text("{}\n")


def names(output_dir):
    return sorted(p.name for p in checkpoints_dir(output_dir).iterdir())


def test_only_complete_checkpoints_count_and_the_newest_keep_are_kept(tmp_path):
    make_folders(tmp_path, ["step-2", "step-4", "step-10", "best"])
    make_folders(tmp_path, ["step-12"], complete=False)  # killed while being written
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step-2", "step-4", "step-10"]
    prune_checkpoints(tmp_path, keep=2)
    assert names(tmp_path) == ["best", "step-10", "step-12", "step-4"]
    prune_checkpoints(tmp_path, keep=1)
    assert names(tmp_path) == ["best", "step-10", "step-12"]


def test_resume_clears_temp_folders_and_later_checkpoints(tmp_path):
    make_folders(tmp_path, ["step-2", "step-4", "step-6", "best", ".tmp-step-8", ".old-best"])
    remove_stale(tmp_path, resumed_step=4)
    assert names(tmp_path) == ["best", "step-2", "step-4"]


def test_fresh_start_clears_an_earlier_runs_checkpoints(tmp_path):
    make_folders(tmp_path, ["step-2", "best"])
    remove_stale(tmp_path, resumed_step=0)
    assert names(tmp_path) == []
