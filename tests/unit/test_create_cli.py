"""scripts/create_import_users.py at the CLI boundary: main([...]) as a user runs it."""
import hashlib
import importlib.util
import os
import random
import re
from pathlib import Path

import pytest

from cic_seed.cli import run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("create_import_users", ROOT / "scripts" / "create_import_users.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tree_hash(root: Path) -> str:
    """sha256 over every path, file content and symlink target under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def create(script, capsys, *args):
    code = run(script.main, [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_help(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--dir", "--seed", "--gift-threshold", "--gift-decimals", "--tag", "--force", "--reset",
                 "--keep-existing", "user_count"):
        assert flag in out


def test_same_seed_gives_an_identical_tree_and_another_seed_does_not(script, capsys, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        code, out, _ = create(script, capsys, "--dir", tmp_path / name, "--seed", seed, "--gift-threshold", 20, 60)
        assert code == 0 and f"created 60 users in {tmp_path / name} (seed {seed})" in out
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b") != tree_hash(tmp_path / "c")


def test_a_random_seed_is_printed_and_repeats_the_run(script, capsys, tmp_path):
    code, _, err = create(script, capsys, "--dir", tmp_path / "a", 20)
    seed = re.search(r"--seed (\d+)", err).group(1)
    assert code == 0
    assert create(script, capsys, "--dir", tmp_path / "b", "--seed", seed, 20)[0] == 0
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b")


def test_the_global_random_is_not_used(script, capsys, tmp_path, monkeypatch):
    state = random.getstate()
    monkeypatch.setattr(random, "seed", lambda *a, **k: pytest.fail("random.seed was called"))
    assert create(script, capsys, "--dir", tmp_path / "a", "--seed", 1, 30)[0] == 0
    assert random.getstate() == state


def test_flags_reach_the_output(script, capsys, tmp_path):
    code, out, err = create(script, capsys, "--dir", tmp_path, "--seed", 2, "--gift-threshold", 7,
                            "--gift-decimals", 2, "--tag", "vendor", "--tag", "farmer", "--tag", "vendor", 40)
    assert code == 0 and err == ""  # no progress bar when stderr is not a terminal
    amounts = [int(line.split(",")[1]) for line in (tmp_path / "balances.csv").read_text().splitlines()]
    assert len(amounts) == 40 and all(a % 100 == 0 and 0 <= a <= 700 for a in amounts) and max(amounts) > 0
    rows = (tmp_path / "tags.csv").read_text().splitlines()
    assert all(row.endswith(",vendor,farmer") for row in rows)
    marker = (tmp_path / ".complete").read_text()
    assert '"gift_decimals": 2' in marker and '"gift_threshold": 7' in marker and '"seed": 2' in marker


def test_print_config_shows_the_decimals_flag(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--gift-decimals", "3", "--print-config", "1"])
    assert exit_info.value.code == 0 and "TOKEN_DECIMALS=3" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["0"], "user_count must be a whole number at least 1, got '0'"),
    (["--", "-5"], "user_count must be a whole number at least 1, got '-5'"),
    (["ten"], "user_count must be a whole number at least 1, got 'ten'"),
    (["1.5"], "user_count must be a whole number at least 1, got '1.5'"),
    (["--seed", "x", "5"], "--seed must be a whole number at least 0"),
    (["--gift-threshold", "-1", "5"], "--gift-threshold must be a whole number at least 0"),
    (["--gift-decimals", "many", "5"], "--gift-decimals (TOKEN_DECIMALS) must be a whole number"),
    (["--tag", "a,b", "5"], "--tag 'a,b': use letters, digits"),
    (["-c", "/nonexistent/config", "5"], "config directory /nonexistent/config does not exist"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(script, capsys, tmp_path, args, message):
    datadir = tmp_path / "out"
    code, out, err = create(script, capsys, "--dir", datadir, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not datadir.exists()


def test_a_non_empty_datadir_needs_force(script, capsys, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    code, _, err = create(script, capsys, "--dir", tmp_path, "--seed", 1, 5)
    assert code == 2 and "is not empty: pass --force" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_a_file_as_datadir_is_refused(script, capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    code, _, err = create(script, capsys, "--dir", tmp_path / "f", 5)
    assert code == 2 and "is a file, not a directory" in err


def test_force_and_reset_are_exclusive(script, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--dir", str(tmp_path), "--force", "--reset", "5"])
    assert exit_info.value.code == 2


def test_keep_existing_keeps_a_matching_generation(script, capsys, tmp_path):
    assert create(script, capsys, "--dir", tmp_path, "--seed", 9, "--gift-threshold", 4, 30)[0] == 0
    before = tree_hash(tmp_path)
    marker_mtime = (tmp_path / ".complete").stat().st_mtime_ns
    for extra in ([], ["--seed", "9"]):  # without --seed any seed matches
        code, out, _ = create(script, capsys, "--dir", tmp_path, "--keep-existing", "--gift-threshold", 4, *extra, 30)
        assert code == 0 and "kept" in out
    assert tree_hash(tmp_path) == before and (tmp_path / ".complete").stat().st_mtime_ns == marker_mtime
    code, _, err = create(script, capsys, "--dir", tmp_path, "--keep-existing", "--gift-threshold", 4, 31)
    assert code == 2 and "--force" in err
    code, out, _ = create(script, capsys, "--dir", tmp_path, "--keep-existing", "--force", "--seed", 9, 31)
    assert code == 0 and "created 31 users" in out
    assert len((tmp_path / "balances.csv").read_text().splitlines()) == 31


def test_force_replaces_and_reset_empties(script, capsys, tmp_path):
    assert create(script, capsys, "--dir", tmp_path, "--seed", 1, 20)[0] == 0
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "stale.json").write_text("{}")
    (tmp_path / "keystore").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    assert create(script, capsys, "--dir", tmp_path, "--seed", 2, "--force", 10)[0] == 0
    assert not (tmp_path / "new").exists() and (tmp_path / "keystore").exists() and (tmp_path / "notes.txt").exists()
    assert len(list((tmp_path / "old").rglob("*.json"))) == 10
    assert create(script, capsys, "--dir", tmp_path, "--seed", 2, "--reset", 10)[0] == 0
    assert not (tmp_path / "notes.txt").exists() and not (tmp_path / "keystore").exists()
