"""Runs that never lose work and never go silently wrong (one test per case of issue 16).

User errors: exit status 2, one line on stderr naming the file/line or flag, nothing created.
Resume, fallback and kills: the run ends with the metrics of an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from arner_jax.data.synthetic import write_synthetic_corpus
from tests.conftest import REPO, train_run
from tests.runs import kill_when, results, signal_when, small, spawn


def cli_exit(argv: list[str], capsys, preset: str = "wojood_nested") -> tuple[int, str]:
    """The training CLI in-process; its exit status and stderr."""
    from arner_jax.train import cli

    capsys.readouterr()
    try:
        cli.main(argv, preset=preset)
        code = 0
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small synthetic corpus as files (every type in train), written once."""
    return write_synthetic_corpus(tmp_path_factory.mktemp("faults_data"), seed=8,
                                  sizes={"train": 160, "val": 24, "test": 24})


# ----------------------------------------------------------------------------- 8, 9, 13: bad inputs, nothing made
@pytest.mark.parametrize("flags,needle", [
    (["--loss", "focall"], "--loss"),
    (["--lr", "nan"], "--lr nan: must be a positive number"),
    (["--batch_size", "0"], "--batch_size 0: must be a positive whole number"),
    (["--warmup_ratio", "1.5"], "--warmup_ratio 1.5"),
    (["--train_path", "DIR", "--val_path", "DIR", "--test_path", "DIR"], "DIR: a directory, not a file"),
    (["--train_path", "missing.txt", "--val_path", "missing.txt", "--test_path", "missing.txt"], "no such file"),
    (["--train_path", "BAD", "--val_path", "BAD", "--test_path", "BAD"], "bad.txt:2: tag 'X-ORG'"),
    (["--train_path", "EMPTY", "--val_path", "EMPTY", "--test_path", "EMPTY"], "empty.txt: no sentences"),
    (["--train_path", "BLANK", "--val_path", "BLANK", "--test_path", "BLANK"], "blank.txt: no sentences"),
    (["--bert_model", "./no_such_model"], "no_such_model: no such folder"),
    (["--train_path", "x.txt"], "--val_path --test_path: missing"),
    (["--overwrite", "--resume"], "exclude each other"),
    (["--resume"], "nothing to resume"),
])
def test_user_errors_exit_2_with_one_line_and_create_nothing(flags, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "DIR").mkdir()
    (tmp_path / "bad.txt").write_text("جريدة B-ORG\nفلسطين X-ORG\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "blank.txt").write_text("\n  \n\n", encoding="utf-8")
    names = {"DIR": "DIR", "BAD": "bad.txt", "EMPTY": "empty.txt", "BLANK": "blank.txt"}
    flags = [names.get(f, f) for f in flags]
    started = time.perf_counter()
    code, err = cli_exit([*flags, "--output_path", str(tmp_path / "out"), "--no_compilation_cache"], capsys)
    assert code == 2
    assert needle in one_error_line(err)
    assert not (tmp_path / "out").exists()
    assert time.perf_counter() - started < 60  # checked at the start, not after training


URL = "gs://bucket/run"


@pytest.mark.parametrize("module,argv,message", [
    # local only: the compilation cache (per machine), what the importers read and the run folders they write
    ("arner_jax.train.cli", ["--compilation_cache", URL], "a URL where a local path is needed"),
    ("arner_jax.convert.__main__", ["from-um6p", "--checkpoint", URL, "--kind", "nested", "--train_path", "t",
                                    "--val_path", "v", "--test_path", "t", "--bert_model", "b", "--output_path", "o"],
     "a URL where a local path is needed"),
    ("arner_jax.convert.__main__", ["from-pytorch", "--hf_model", "m", "--output_path", URL],
     "a URL where a local path is needed"),
    ("arner_jax.sweep.run", ["--preset", "um6p_table", "--output_path", "s", "--compilation_cache", URL],
     "a URL where a local path is needed"),
    # Cloud Storage is gs:// only
    ("arner_jax.train.cli", ["--output_path", "s3://bucket/run"], "only gs:// URLs are supported"),
    ("arner_jax.train.cli", ["--train_path", "https://host/t.txt", "--val_path", "v.txt", "--test_path", "t.txt"],
     "only gs:// URLs are supported"),
    ("arner_jax.evaluate", ["--model_path", "s3://bucket/run", "--data_paths", "t.txt"], "only gs:// URLs"),
    ("arner_jax.predict", ["--model_path", "run", "--text", "x", "--output", "https://host/out"], "only gs:// URLs"),
    ("arner_jax.sweep.run", ["--preset", "um6p_table", "--output_path", "gs://Not_A_Bucket/s"],
     "not a Cloud Storage folder"),
    ("arner_jax.sweep.report", ["s3://bucket/sweep"], "only gs:// URLs"),
])
def test_a_url_that_cannot_be_used_is_one_line_and_creates_nothing(module, argv, message, tmp_path, capsys,
                                                                   monkeypatch):
    """pathlib would turn gs://bucket/run into a local folder gs:/bucket/run: local-only flags refuse URLs, the
    others every URL but gs://."""
    import importlib

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main(argv)
    assert stop.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert message in line and ("://" in line)
    assert list(tmp_path.iterdir()) == []


def test_help_lists_the_choices_of_enumerated_flags(capsys):
    with pytest.raises(SystemExit) as stop:
        from arner_jax.train import cli

        cli.main(["--help"], preset="wojood_nested")
    out = capsys.readouterr().out
    assert stop.value.code == 0
    assert "{unified,ce,focal,dice,tversky}" in out and "{pmap,shard_map}" in out and "{loss,f1}" in out
    assert "--marker_max_length" not in out  # the span family's settings are not offered by a tagger preset


# ----------------------------------------------------------------------------- 2: --overwrite
def test_overwrite_refuses_a_folder_of_the_users_own_files(tmp_path, capsys):
    own = tmp_path / "mine"
    own.mkdir()
    (own / "notes.txt").write_text("keep me")
    code, err = cli_exit(["--smoke", "--output_path", str(own), "--overwrite", "--no_compilation_cache"], capsys)
    assert code == 2 and "not a run folder of arner_jax" in one_error_line(err)
    assert [p.name for p in own.iterdir()] == ["notes.txt"] and (own / "notes.txt").read_text() == "keep me"


def test_overwrite_checks_the_new_inputs_before_deleting_the_run(nested_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(nested_run, run)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    code, err = cli_exit(["--output_path", str(run), "--overwrite", "--train_path", "tpyo.txt", "--val_path",
                          "tpyo.txt", "--test_path", "tpyo.txt", "--no_compilation_cache"], capsys)
    assert code == 2 and "tpyo.txt: no such file" in one_error_line(err)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


# ----------------------------------------------------------------------------- 1, 11: resume with no checkpoint
@pytest.mark.slow
def test_resume_without_a_checkpoint_is_the_fresh_run_from_another_directory(files, tiny_bert, tmp_path,
                                                                             monkeypatch):
    """Killed before its first checkpoint, the run resumes as its fresh run (the pretrained encoder, not random
    weights), and from another working directory (config.json holds absolute input paths)."""
    data = tmp_path / "data"
    shutil.copytree(files["train"].parent, data)
    monkeypatch.chdir(tmp_path)  # relative paths on the command line
    flags = ["--train_path", "data/train.txt", "--val_path", "data/val.txt", "--test_path", "data/test.txt",
             "--bert_model", str(tiny_bert), "--max_length", "64", "--batch_size", "8", "--lr", "2e-3",
             "--max_epochs", "2"]
    straight = train_run(Path("straight"), "wojood_nested", *flags)
    saved = json.loads(Path("straight/config.json").read_text())["run"]
    assert saved["train_path"] == str(data / "train.txt")
    # what a kill before the first checkpoint leaves: the run's own files, no checkpoint, no results
    killed = tmp_path / "killed"
    shutil.copytree("straight", killed, ignore=shutil.ignore_patterns("checkpoints", "metrics.json", "predictions*",
                                                                       "tensorboard", "train.log"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    resumed = train_run(killed, "wojood_nested", "--resume")
    assert results(resumed) == results(straight)
    assert "no checkpoint to continue from" in (killed / "train.log").read_text()


# ----------------------------------------------------------------------------- 7: a damaged newest checkpoint
@pytest.mark.slow
def test_damaged_checkpoints_fall_back_to_the_previous_one(files, tiny_bert, tmp_path, caplog):
    flags = small(files, tiny_bert, "--max_epochs", "2")
    straight = train_run(tmp_path / "straight", "wojood_nested", *flags)
    latest = tmp_path / "straight" / "checkpoints" / "latest"
    steps = sorted(int(p.name) for p in latest.iterdir() if p.name.isdigit())
    assert len(steps) == 2  # the newest two are kept
    for damaged, expected_warning in (((steps[-1],), "cannot be read"), (tuple(steps), "starts again")):
        run = tmp_path / f"damaged_{len(damaged)}"
        shutil.copytree(tmp_path / "straight", run)
        (run / "metrics.json").unlink()
        for step in damaged:  # its array data gone: the state cannot be restored
            shutil.rmtree(run / "checkpoints" / "latest" / str(step) / "state" / "d", ignore_errors=True)
            for f in (run / "checkpoints" / "latest" / str(step) / "state").rglob("*.ocdbt"):
                f.write_bytes(b"damaged")
        resumed = train_run(run, "wojood_nested", "--resume")
        assert results(resumed) == results(straight)
        log = (run / "train.log").read_text()
        assert expected_warning in log
        if len(damaged) == 1:
            assert f"checkpoints/latest/{steps[-1]} cannot be read" in log


# ----------------------------------------------------------------------------- 3: readers are read-only
READER = """
import sys, time
from pathlib import Path
from arner_jax.predict import NERTagger
from arner_jax.runs.run_folder import RunFolderError
run, stop = Path(sys.argv[1]), Path(sys.argv[2])
loads = 0
while not stop.exists():
    try:
        NERTagger.from_pretrained(run).predict("مجلس الأمن في نابلس")
        loads += 1
    except RunFolderError:
        time.sleep(0.05)
print(loads)
"""


@pytest.mark.slow
def test_loading_a_run_while_it_trains_leaves_the_training_undisturbed(files, tiny_bert, tmp_path):
    flags = small(files, tiny_bert, "--max_epochs", "3", "--checkpoint_every", "4")
    reference = train_run(tmp_path / "reference", "wojood_nested", *flags)
    run, stop = tmp_path / "busy", tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(run), str(stop)], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    try:
        busy = train_run(run, "wojood_nested", *flags)
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0, err[-2000:]
    assert int(out.strip()) > 0, "the reader loaded the run while it trained"
    assert results(busy) == results(reference)
    assert not (run / "eval").exists() and not list(run.rglob("*.tmp"))


# ----------------------------------------------------------------------------- 4: converters
def test_converters_refuse_run_folders_and_folders_they_did_not_write(nested_run, span_run, tmp_path, capsys):
    from arner_jax.convert.__main__ import main as convert

    def exit_code(argv):
        capsys.readouterr()
        try:
            return convert(argv), capsys.readouterr().err
        except SystemExit as stop:
            return stop.code, capsys.readouterr().err

    config = (nested_run / "config.json").read_bytes()
    code, err = exit_code(["to-pytorch", "--model_path", str(nested_run), "--output_path", str(nested_run)])
    assert code == 2 and "is a run folder" in one_error_line(err)
    assert (nested_run / "config.json").read_bytes() == config
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")
    for argv in (["to-pytorch", "--model_path", str(nested_run)], ["to-span-marker", "--model_path", str(span_run[0])]):
        code, err = exit_code([*argv, "--output_path", str(foreign)])
        assert code == 2 and "did not write" in one_error_line(err)
        assert (foreign / "config.json").read_text() == "{}"
    assert exit_code(["to-pytorch", "--model_path", str(nested_run), "--output_path", str(tmp_path / "e")])[0] == 0
    code, err = exit_code(["to-pytorch", "--model_path", str(nested_run), "--output_path", str(tmp_path / "e")])
    assert code == 2 and "--overwrite" in one_error_line(err)
    assert exit_code(["to-pytorch", "--model_path", str(nested_run), "--output_path", str(tmp_path / "e"),
                      "--overwrite"])[0] == 0
    code, err = exit_code(["from-pytorch", "--hf_model", str(tmp_path / "e"), "--output_path", str(nested_run)])
    assert code == 2 and "not empty" in one_error_line(err)


# ----------------------------------------------------------------------------- 6: empty and entity-free files
def test_scoring_empty_and_entity_free_files_gives_zero_with_a_note(nested_run, tmp_path, capsys):
    from arner_jax.evaluate import evaluate_files
    from arner_jax.score import main as score

    empty, plain = tmp_path / "empty.txt", tmp_path / "plain.txt"
    empty.write_text("")
    plain.write_text("مجلس O\nالأمن O\n\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in (empty, plain):
            capsys.readouterr()
            assert score(["--gold", str(path), "--pred", str(path), "--nested"]) == 0
            got = json.loads(capsys.readouterr().out)
            assert (got["precision"], got["recall"], got["f1"]) == (0.0, 0.0, 0.0) and got["note"]
        metrics = evaluate_files(nested_run, [empty, plain], tmp_path / "eval")
    assert all(m["f1"] == 0.0 and m["note"] for m in metrics.values())


# ----------------------------------------------------------------------------- 10, 12: evaluate and predict
def test_evaluate_writes_files_of_the_same_name_apart(nested_run, tmp_path):
    from arner_jax.evaluate import evaluate_files

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(nested_run / "data" / "test.txt", tmp_path / folder / "test.txt")
    evaluate_files(nested_run, [tmp_path / "a" / "test.txt", tmp_path / "b" / "test.txt"], tmp_path / "eval")
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["a_test", "b_test"]
    for name in ("a_test", "b_test"):
        assert sorted(p.name for p in (tmp_path / "eval" / name).iterdir()) == ["metrics.json", "predictions.txt"]


def test_predict_on_a_span_run_and_a_bad_batch_size(span_run, capsys):
    from arner_jax.predict import main as predict

    run, _, corpus = span_run
    assert predict(["--model_path", str(run), "--input", str(corpus["test"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 40 and all(isinstance(json.loads(line), list) for line in lines)
    with pytest.raises(SystemExit) as stop:
        predict(["--model_path", str(run), "--text", "x", "--batch_size", "0"])
    assert stop.value.code == 2 and "--batch_size" in one_error_line(capsys.readouterr().err)


def test_conll_output_puts_the_outermost_tag_first(nested_run, tmp_path):
    from arner_jax.data.wojood import read_wojood
    from arner_jax.predict import main as predict

    assert predict(["--model_path", str(nested_run), "--input", str(nested_run / "data" / "test.txt"), "--format",
                    "conll", "--output", str(tmp_path / "out.txt")]) == 0
    tagged = read_wojood(tmp_path / "out.txt")
    nested_words = [tags for s in tagged.sentences for tags in s.tags if len(tags) > 1]
    assert nested_words, "the trained run predicts nested entities"
    for s in tagged.sentences:  # a word's first tag belongs to the longest entity covering it
        for i, tags in enumerate(s.tags):
            lengths = [_entity_length(s.tags, i, tag[2:]) for tag in tags if tag != "O"]
            assert lengths == sorted(lengths, reverse=True)


def _entity_length(tags, i, entity_type):
    start = i
    while tags[start][0] != "O" and next(t for t in tags[start] if t[2:] == entity_type)[0] == "I":
        start -= 1
    end = i + 1
    while end < len(tags) and any(t == f"I-{entity_type}" for t in tags[end]):
        end += 1
    return end - start


# ----------------------------------------------------------------------------- 14: a type only in val/test
@pytest.mark.slow
def test_a_type_missing_from_train_is_named_before_training(files, tiny_bert, tmp_path):
    val = tmp_path / "val.txt"
    val.write_text(files["val"].read_text() + "القانون B-LAW\nالأساسي I-LAW\n\n", encoding="utf-8")
    flags = small(files, tiny_bert, "--max_epochs", "1")
    flags[flags.index("--val_path") + 1] = str(val)
    train_run(tmp_path / "run", "wojood_nested", *flags)
    log = (tmp_path / "run" / "train.log").read_text()
    warning = log.index("entity type LAW occurs in val (1 entities) but never in train")
    assert warning < log.index("epoch 1:")


def test_importing_without_pytorch_prints_no_notice():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import arner_jax.predict, arner_jax.train.cli, transformers\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stderr == "", out.stderr


# ----------------------------------------------------------------------------- kills and preemption (processes)
def complete(folder: Path) -> list[int]:
    from arner_jax.runs.checkpoints import complete_steps

    return complete_steps(folder)


KILL_POINTS = {
    "started": lambda run: (run / "config.json").is_file(),
    "first_checkpoint": lambda run: bool(complete(run / "checkpoints" / "latest")),
    "while_saving": lambda run: any(".orbax-checkpoint-tmp" in p.name for p in
                                    (run / "checkpoints" / "latest").glob("*")) if (run / "checkpoints").is_dir()
    else False,
    "second_epoch": lambda run: len(complete(run / "checkpoints" / "latest")) >= 2,
    "writing_results": lambda run: (run / "predictions_val.txt").is_file(),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_at_any_point_resumes_to_the_uninterrupted_metrics(point, files, tiny_bert, tmp_path_factory,
                                                                  compilation_cache):
    flags = small(files, tiny_bert, "--max_epochs", "3", "--checkpoint_every", "3", "--compilation_cache",
                  str(compilation_cache))
    base = tmp_path_factory.getbasetemp() / "kill_reference"
    if not (base / "run" / "metrics.json").is_file():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir()
        assert spawn([*flags, "--output_path", str(base / "run")], base / "log.txt").wait(timeout=900) == 0
    reference = json.loads((base / "run" / "metrics.json").read_text())
    tmp = tmp_path_factory.mktemp(point)
    run = tmp / "run"
    proc = spawn([*flags, "--output_path", str(run)], tmp / "log.txt")
    kill_when(proc, lambda: KILL_POINTS[point](run), tmp / "log.txt")  # really killed: no cleanup, no final save
    resumed = spawn(["--output_path", str(run), "--resume"], tmp / "log.txt")
    assert resumed.wait(timeout=900) == 0, (tmp / "log.txt").read_text()[-3000:]
    assert results(json.loads((run / "metrics.json").read_text())) == results(reference)


@pytest.mark.slow
def test_sigterm_saves_stops_and_resumes_to_the_uninterrupted_metrics(files, tiny_bert, tmp_path, compilation_cache):
    flags = small(files, tiny_bert, "--max_epochs", "2", "--checkpoint_every", "5", "--compilation_cache",
                  str(compilation_cache))
    reference = train_run(tmp_path / "reference", "wojood_nested", *flags)
    run = tmp_path / "run"
    proc = spawn([*flags, "--output_path", str(run)], tmp_path / "log.txt")
    # step 5 of epoch 1's 22 saved: SIGTERM mid-epoch
    signal_when(proc, lambda: bool(complete(run / "checkpoints" / "latest")), tmp_path / "log.txt", signal.SIGTERM,
                poll=0.01)
    assert proc.wait(timeout=300) == 143
    log = (tmp_path / "log.txt").read_text()
    assert "preempted: stopped by SIGTERM at step" in log and "--resume" in log
    assert not (run / "metrics.json").exists()
    resumed = spawn(["--output_path", str(run), "--resume"], tmp_path / "log.txt")
    assert resumed.wait(timeout=900) == 0, (tmp_path / "log.txt").read_text()[-3000:]
    assert results(json.loads((run / "metrics.json").read_text())) == results(reference)
