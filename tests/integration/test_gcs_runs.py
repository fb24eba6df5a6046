"""Run folders on Cloud Storage (issue 27): every command with its folder on the session's local GCS server
(tests/gcs_server.py), compared with the same command on a local folder.

The default set (the README command) trains one small run on gs:// and on a local folder and compares them
file by file, and checks that refusals are one line and create nothing. The slow set evaluates, predicts,
resumes and exports from and to gs://, runs a sweep and its report there, kills a gs:// run at three points
and resumes it, stops one with SIGTERM, and trains two processes into one gs:// folder.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import REPO as REPO_ROOT
from tests.conftest import train_run

SMOKE = ["--smoke", "--max_epochs", "2", "--patience", "2", "--lr", "5e-3"]


def local_files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def gcs_files(server, url: str) -> dict[str, bytes]:
    prefix = url.split("/", 3)[3] + "/"
    return {name[len(prefix):]: data for name, data in server.listing(url + "/").items()}


def without_timing(metrics_json: bytes) -> dict:
    return {k: v for k, v in json.loads(metrics_json).items() if k != "timing"}


def kept_params(run) -> dict:
    import jax

    from arner_jax.runs.loading import load_run

    return jax.tree.map(np.asarray, load_run(run).params)


@pytest.fixture(scope="module")
def twin_runs(gcs_server, tmp_path_factory, compilation_cache):
    """The same small run in a local folder and in gs://; (local folder, URL)."""
    local = tmp_path_factory.mktemp("twin") / "run"
    url = gcs_server.new_prefix("twin") + "/run"
    for out in (local, url):
        train_run(out, "wojood_nested", *SMOKE, cache=compilation_cache)
    return local, url


def test_a_run_on_cloud_storage_is_the_local_run_file_by_file(twin_runs, gcs_server):
    local, url = twin_runs
    here, there = local_files(local), gcs_files(gcs_server, url)
    plain = {name for name in here if not name.startswith(("checkpoints/", "tensorboard/"))} - {"train.log"}
    assert plain == {name for name in there if not name.startswith(("checkpoints/", "tensorboard/"))} - {"train.log"}
    assert {"config.json", "vocab.json", "metrics.json", "predictions_val.txt", "predictions_test.txt",
            "tokenizer/tokenizer.json", "data/train.txt", ".arner_jax_run"} <= plain
    for name in plain - {"metrics.json"}:
        assert here[name] == there[name], name
    assert without_timing(here["metrics.json"]) == without_timing(there["metrics.json"])
    assert len(json.loads(there["metrics.json"])["history"]) == 2
    # the checkpoints hold the same arrays; Orbax committed each step on gs:// (commit_success.txt)
    from arner_jax.runs.checkpoints import complete_steps

    for kind in ("latest", "best"):
        assert complete_steps(local / "checkpoints" / kind) == complete_steps(f"{url}/checkpoints/{kind}")
    a, b = _leaves(kept_params(local)), _leaves(kept_params(url))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    log = there["train.log"].decode()
    assert f"run folder {url} (new)" in log and "epoch 2:" in log and "kept model (epoch" in log
    events = [name for name in there if name.startswith("tensorboard/events.out.tfevents.")]
    assert len(events) == 1 and len(there[events[0]]) > 100


def _leaves(tree) -> dict:
    import jax

    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.slow
def test_evaluate_and_predict_read_a_gs_run_and_write_gs_files(twin_runs, gcs_server, tmp_path, capsys):
    from arner_jax.data import files
    from arner_jax.evaluate import evaluate_files
    from arner_jax.predict import main as predict

    local, url = twin_runs
    data = f"{url}/data/test.txt"  # the run's own test file, on gs://
    there = evaluate_files(url, [data])
    here = evaluate_files(local, [local / "data" / "test.txt"], tmp_path / "eval")
    assert list(there.values()) == list(here.values())
    written = gcs_files(gcs_server, url)
    assert written["eval/test/predictions.txt"] == (tmp_path / "eval" / "test" / "predictions.txt").read_bytes()
    assert json.loads(written["eval/test/metrics.json"])["data"] == data
    for model, source, out in ((url, data, f"{url}/out/pred.jsonl"),
                               (local, local / "data" / "test.txt", tmp_path / "pred.jsonl")):
        assert predict(["--model_path", str(model), "--input", str(source), "--output", str(out)]) == 0
    assert files.read_bytes(f"{url}/out/pred.jsonl") == (tmp_path / "pred.jsonl").read_bytes()


@pytest.mark.slow
def test_readers_of_a_gs_run_write_nothing_into_it(twin_runs, gcs_server, tmp_path):
    from arner_jax.predict import NERTagger
    from arner_jax.runs.run_folder import read_run

    _, url = twin_runs
    before = gcs_files(gcs_server, url)
    read_run(url)
    NERTagger.from_pretrained(url).predict(["ذهب محمد إلى القدس"])
    assert gcs_files(gcs_server, url) == before


@pytest.mark.slow
def test_resuming_a_finished_gs_run_keeps_its_results(twin_runs, gcs_server, compilation_cache):
    from arner_jax.train import cli

    _, url = twin_runs
    metrics = gcs_files(gcs_server, url)["metrics.json"]
    again = cli.main(["--output_path", url, "--resume", "--compilation_cache", str(compilation_cache)])
    assert {k: v for k, v in again.items() if k != "timing"} == without_timing(metrics)


# ----------------------------------------------------------------------------- one line, nothing created
def _cli_error(argv, capsys) -> str:
    from arner_jax.train import cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize("case", ["missing_bucket", "forbidden", "not_gs", "bad_bucket_name", "bucket_root",
                                  "not_empty"])
def test_bad_gs_output_paths_are_one_line_and_create_nothing(case, gcs_server, gcs_prefix, capsys):
    from arner_jax.data import files

    url = {"missing_bucket": "gs://no-such-bucket-at-all/run", "not_gs": "s3://bucket/run",
           "bad_bucket_name": "gs://Bad_Bucket/run", "bucket_root": f"gs://{gcs_server.bucket}"}.get(
               case, f"{gcs_prefix}/run")
    if case == "not_empty":
        files.atomic_write_text(f"{url}/notes.txt", "mine\n")
    argv = ["--output_path", url, *SMOKE, "--no_compilation_cache"]
    with gcs_server.forbid(gcs_prefix) if case == "forbidden" else _nothing():
        line = _cli_error(argv, capsys)
    assert {"missing_bucket": "the bucket gs://no-such-bucket-at-all does not exist",
            "forbidden": "permission denied (403)", "not_gs": "only gs:// URLs are supported",
            "bad_bucket_name": "not a Cloud Storage folder", "bucket_root": "never the bucket itself",
            "not_empty": "the folder is not empty"}[case] in line
    assert url in line
    if case == "not_empty":
        assert list(gcs_files(gcs_server, url)) == ["notes.txt"]
        assert "--overwrite" in line
        assert "not a run folder of arner_jax, so --overwrite will not delete it" in _cli_error(
            [*argv, "--overwrite"], capsys)
        assert list(gcs_files(gcs_server, url)) == ["notes.txt"]  # never deleted: not ours
    else:
        assert gcs_server.listing(gcs_prefix + "/") == {}


def test_no_credentials_is_one_line_naming_the_command_that_sets_them_up(gcs_server, gcs_prefix, capsys):
    with gcs_server.requiring_credentials():
        line = _cli_error(["--output_path", f"{gcs_prefix}/run", *SMOKE, "--no_compilation_cache"], capsys)
        code = _predict_exit(["--model_path", f"{gcs_prefix}/run", "--text", "نص"], capsys)
    assert line.startswith(f"error: {gcs_prefix}/run: no Google Cloud credentials")
    assert "gcloud auth application-default login" in line and "GOOGLE_APPLICATION_CREDENTIALS" in line
    assert code == (2, line.replace("error: ", "", 1)[:40])
    assert gcs_server.listing(gcs_prefix + "/") == {}


def _predict_exit(argv, capsys) -> tuple[int, str]:
    from arner_jax.predict import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return stop.value.code, err.replace("error: ", "", 1)[:40]


def _nothing():
    import contextlib

    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- sweeps and their reports
@pytest.mark.slow
def test_a_sweep_and_its_report_on_gs(gcs_server, gcs_prefix, compilation_cache, tmp_path, capsys):
    from arner_jax.sweep import report
    from arner_jax.sweep import run as sweep

    root = f"{gcs_prefix}/sweep"
    sweep.main(["--preset", "um6p_table", "--smoke", "--only", "nested-arbertv2-ce", "--output_path", root,
                "--compilation_cache", str(compilation_cache)])
    written = gcs_files(gcs_server, root)
    assert {"sweep.json", "sweep.log", "nested-arbertv2-ce/seed0/metrics.json"} <= set(written)
    assert "1 runs, 0 finished before, 1 to train; in " + root in written["sweep.log"].decode()
    report.main([root, "--output", str(tmp_path / "tables")])  # reading a gs:// sweep writes nothing there
    assert gcs_files(gcs_server, root) == written
    report.main([root])  # the report beside the sweep, on gs://
    rows = json.loads(gcs_files(gcs_server, root)["results.json"])["rows"]
    assert rows == json.loads((tmp_path / "tables" / "results.json").read_text())["rows"]
    assert rows[0]["seeds_finished"] == 1
    assert gcs_files(gcs_server, root)["results.md"] == (tmp_path / "tables" / "results.md").read_bytes()
    assert len(gcs_files(gcs_server, root)["curves_f1.png"]) > 1000
    # a second start finds the finished run on gs:// and trains nothing
    capsys.readouterr()
    sweep.main(["--preset", "um6p_table", "--smoke", "--only", "nested-arbertv2-ce", "--output_path", root])
    assert "skipped (finished before)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- kills, SIGTERM, two processes
def _gcs_complete(url: str) -> list[int]:
    from arner_jax.runs.checkpoints import complete_steps

    return complete_steps(url)


def _saving(url: str) -> bool:
    """A step folder Orbax has begun on gs:// and not committed yet."""
    from arner_jax.data import files

    folder = files.location(url)
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir()) and bool(
        {p.name for p in folder.iterdir() if p.name.isdigit()} - {str(s) for s in _gcs_complete(url)})


GCS_KILL_POINTS = {
    "while_saving": lambda run: _saving(f"{run}/checkpoints/latest"),
    "second_epoch": lambda run: len(_gcs_complete(f"{run}/checkpoints/latest")) >= 2,
    "writing_results": lambda run: files_there(f"{run}/predictions_val.txt"),
}


def files_there(url: str) -> bool:
    from arner_jax.data import files

    return files.is_file(url)


@pytest.mark.slow
@pytest.mark.parametrize("point", list(GCS_KILL_POINTS))
def test_a_gs_run_killed_at_any_point_resumes_to_the_uninterrupted_metrics(point, gcs_server, tmp_path_factory,
                                                                           tiny_bert, compilation_cache):

    from arner_jax.data.synthetic import write_synthetic_corpus
    from tests.runs import kill_when, results, small, spawn

    data = write_synthetic_corpus(tmp_path_factory.mktemp("gcs_kill_data"), seed=8,
                                  sizes={"train": 160, "val": 24, "test": 24})
    flags = small(data, tiny_bert, "--max_epochs", "3", "--checkpoint_every", "3", "--compilation_cache",
                  str(compilation_cache))
    tmp = tmp_path_factory.mktemp(f"gcs_{point}")
    reference = train_run(tmp / "reference", "wojood_nested", *flags)
    run = gcs_server.new_prefix(point) + "/run"
    proc = spawn([*flags, "--output_path", run], tmp / "log.txt")
    kill_when(proc, lambda: GCS_KILL_POINTS[point](run), tmp / "log.txt", poll=0.01)  # no cleanup, no final save
    resumed = spawn(["--output_path", run, "--resume"], tmp / "log.txt")
    assert resumed.wait(timeout=900) == 0, (tmp / "log.txt").read_text()[-3000:]
    assert results(json.loads(gcs_files(gcs_server, run)["metrics.json"])) == results(reference)


@pytest.mark.slow
def test_sigterm_saves_a_gs_run_which_resumes_to_the_uninterrupted_metrics(gcs_server, tmp_path, tiny_bert,
                                                                           compilation_cache):
    import signal

    from arner_jax.data.synthetic import write_synthetic_corpus
    from tests.runs import results, signal_when, small, spawn

    data = write_synthetic_corpus(tmp_path / "data", seed=8, sizes={"train": 160, "val": 24, "test": 24})
    flags = small(data, tiny_bert, "--max_epochs", "2", "--checkpoint_every", "5", "--compilation_cache",
                  str(compilation_cache))
    reference = train_run(tmp_path / "reference", "wojood_nested", *flags)
    run = gcs_server.new_prefix("sigterm") + "/run"
    proc = spawn([*flags, "--output_path", run], tmp_path / "log.txt")
    signal_when(proc, lambda: bool(_gcs_complete(f"{run}/checkpoints/latest")), tmp_path / "log.txt",
                signal.SIGTERM, poll=0.02)
    assert proc.wait(timeout=300) == 143
    log = (tmp_path / "log.txt").read_text()
    assert "preempted: stopped by SIGTERM at step" in log and "--resume" in log
    assert "metrics.json" not in gcs_files(gcs_server, run)
    assert "SIGTERM received" in gcs_files(gcs_server, run)["train.log"].decode()  # the log was uploaded at the stop
    resumed = spawn(["--output_path", run, "--resume"], tmp_path / "log.txt")
    assert resumed.wait(timeout=900) == 0, (tmp_path / "log.txt").read_text()[-3000:]
    assert results(json.loads(gcs_files(gcs_server, run)["metrics.json"])) == results(reference)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_write_one_gs_run_folder(gcs_server, tmp_path):
    """Two processes (127.0.0.1) train into one gs:// folder: the metrics, tokenizer, files and checkpoints are
    those of one process with two devices writing a local folder."""
    import os
    import subprocess

    from tests.runs import LAUNCH, TRAIN, one_process_two_devices
    from tests.runs import folder_results as results

    one = subprocess.run([*TRAIN, "--output_path", str(tmp_path / "one")], cwd=REPO_ROOT,
                         env=one_process_two_devices(), capture_output=True, text=True, timeout=900)
    assert one.returncode == 0, one.stderr[-3000:]
    run = gcs_server.new_prefix("two") + "/run"
    two = subprocess.run([*LAUNCH, *TRAIN, "--output_path", run], cwd=REPO_ROOT,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    there = gcs_files(gcs_server, run)
    assert without_timing(there["metrics.json"]) == results(tmp_path / "one")
    here = local_files(tmp_path / "one")
    for name in ("config.json", "vocab.json", "predictions_val.txt", "predictions_test.txt", "tokenizer/tokenizer.json",
                 "data/train.txt"):
        assert there[name] == here[name], name
    from arner_jax.runs.checkpoints import complete_steps

    for kind in ("latest", "best"):  # the same checkpoints, committed on gs:// (the arrays are the host's copies,
        # the same in both processes: Orbax writes them once)
        assert complete_steps(f"{run}/checkpoints/{kind}") == complete_steps(tmp_path / "one" / "checkpoints" / kind)


def test_overwrite_deletes_only_a_gs_run_folder_of_ours(gcs_server, gcs_prefix):
    from arner_jax.data import files
    from arner_jax.runs import run_folder

    ours, theirs = f"{gcs_prefix}/lr[1]", f"{gcs_prefix}/lr1"  # a name that is a glob pattern of the other's
    run_folder.create(ours, overwrite=False)
    files.atomic_write_text(f"{ours}/checkpoints/latest/3/state/x", "old")
    files.atomic_write_text(f"{theirs}/notes.txt", "mine")
    run_folder.check_output(ours, overwrite=True, resume=False)
    run_folder.create(ours, overwrite=True)
    assert list(gcs_files(gcs_server, ours)) == [".arner_jax_run"]  # the old run is gone, the new one marked
    with pytest.raises(run_folder.RunFolderError, match="not a run folder of arner_jax, so --overwrite will not"):
        run_folder.check_output(theirs, overwrite=True, resume=False)
    with pytest.raises(run_folder.RunFolderError, match="not deleted"):
        run_folder.create(theirs, overwrite=True)
    assert list(gcs_files(gcs_server, theirs)) == ["notes.txt"]
    from arner_jax.data import files as storage

    with pytest.raises(storage.StorageError, match="a bucket, not a folder in one"):
        storage.remove_tree(f"gs://{gcs_server.bucket}")


# ----------------------------------------------------------------------------- exports from and to gs://
@pytest.mark.slow
def test_a_gs_run_exports_to_pytorch_in_a_bucket_as_to_a_local_folder(twin_runs, gcs_server, tmp_path, capsys):
    from arner_jax.convert.__main__ import main as convert

    _, url = twin_runs
    out = gcs_server.new_prefix("export") + "/torch"
    for target in (str(tmp_path / "torch"), out):
        assert convert(["to-pytorch", "--model_path", url, "--output_path", target, "--verify"]) == 0
        assert "-> OK" in capsys.readouterr().out
    here, there = local_files(tmp_path / "torch"), gcs_files(gcs_server, out)
    assert set(here) == set(there) and "model.safetensors" in here
    assert all(here[name] == there[name] for name in here if name != "README.md")
    card = there["README.md"].decode()
    assert f"gsutil -m cp -r {out} ." in card and f"- **Source run:** {url}\n" in card
    assert "gsutil" not in here["README.md"].decode()
    # an earlier export in the bucket is replaced only with --overwrite
    with pytest.raises(SystemExit, match="2"):
        convert(["to-pytorch", "--model_path", url, "--output_path", out])
    assert "holds an earlier export; pass --overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_a_span_run_exports_to_a_bucket_given_the_encoders_name(span_run, gcs_server, gcs_prefix, capsys):
    from arner_jax.convert.__main__ import main as convert
    from arner_jax.models.span_marker.pretrained import SpanMarkerModel

    run, _, corpus = span_run
    out = f"{gcs_prefix}/span"
    with pytest.raises(SystemExit, match="2"):
        convert(["to-span-marker", "--model_path", str(run), "--output_path", out])
    assert "needs --encoder_name" in capsys.readouterr().err and gcs_server.listing(gcs_prefix + "/") == {}
    assert convert(["to-span-marker", "--model_path", str(run), "--output_path", out, "--encoder_name",
                    "example/tiny-bert", "--verify"]) == 0
    assert "-> OK" in capsys.readouterr().out
    written = gcs_files(gcs_server, out)
    assert json.loads(written["config.json"])["encoder"]["_name_or_path"] == "example/tiny-bert"
    texts = [["ذهب", "محمد", "إلى", "القدس"]]
    back = SpanMarkerModel.from_pretrained(out).span_logits(texts)  # read back from the bucket
    ours = SpanMarkerModel.from_pretrained(run).span_logits(texts)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(back, ours))
