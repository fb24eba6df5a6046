"""arner_jax.data.files, the one owner of storage: atomic writes, and reading local paths and gs:// URLs
(against the session's local GCS server, tests/gcs_server.py); the score command on gs:// files."""
from __future__ import annotations

import contextlib
import json
import os

import pytest

from arner_jax.data import files
from tests.conftest import shared_path


def test_local_atomic_writes_leave_no_temporary_and_read_back(tmp_path):
    files.atomic_write_json(tmp_path / "a.json", {"x": "ع"})
    files.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert json.loads(files.read_bytes(tmp_path / "a.json")) == {"x": "ع"}
    assert files.read_bytes(tmp_path / "b.bin") == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_a_url_write_is_one_upload_and_reads_back(gcs_server, gcs_prefix):
    url = f"{gcs_prefix}/run/config.json"
    before = len(gcs_server.requests)  # the server keeps the session's requests
    files.atomic_write_json(url, {"kind": "nested"})
    assert json.loads(files.read_bytes(url)) == {"kind": "nested"}
    assert list(gcs_server.listing(gcs_prefix)) == [url.split("/", 3)[3]]  # no temporary object
    served = list(gcs_server.requests)[before:]
    uploads = [r for r in served if r[0] in ("POST", "PUT") and "upload" in r[1]]
    assert len(uploads) == 1 and not any(w in r[1] for r in served for w in ("moveTo", "copyTo", "rewriteTo"))


@pytest.mark.parametrize("where,message", [
    ("missing_object", "no such file; check the path"),
    ("missing_object_named_bucket", "no such file; check the path"),  # chosen by the error, not the path's words
    ("missing_bucket", "the bucket gs://no-such-bucket-here does not exist"),
    ("forbidden", "permission denied (403)"),
])
def test_url_failures_are_one_line_naming_the_url(where, message, gcs_server, gcs_prefix):
    url = {"missing_object": f"{gcs_prefix}/nothing.txt", "missing_bucket": "gs://no-such-bucket-here/x.txt",
           "missing_object_named_bucket": f"{gcs_prefix}/bucket-credentials-401/nothing.txt",
           "forbidden": f"{gcs_prefix}/secret.txt"}[where]
    if where == "forbidden":
        files.atomic_write_text(url, "O\n")
    with gcs_server.forbid(gcs_prefix, reads=True) if where == "forbidden" else contextlib.nullcontext():
        with pytest.raises(files.StorageError) as err:
            files.read_bytes(url)
    assert str(err.value).startswith(url + ": ") and message in str(err.value) and "\n" not in str(err.value)


def test_score_reads_gs_files_as_it_reads_local_ones(gcs_server, gcs_prefix, tmp_path, capsys):
    from arner_jax.score import main as score

    gold = shared_path("data", "wojood_sample", "test.txt")
    lines = gold.read_text(encoding="utf-8").splitlines(keepends=True)
    pred_text = "".join(line.replace("B-ORG", "B-GPE", 1) if i % 7 == 0 else line for i, line in enumerate(lines))
    (tmp_path / "pred.txt").write_text(pred_text, encoding="utf-8")
    files.atomic_write_bytes(f"{gcs_prefix}/gold.txt", gold.read_bytes())
    files.atomic_write_text(f"{gcs_prefix}/pred.txt", pred_text)
    outputs = []
    for g, p in ((str(gold), str(tmp_path / "pred.txt")), (f"{gcs_prefix}/gold.txt", f"{gcs_prefix}/pred.txt")):
        assert score(["--gold", g, "--pred", p, "--nested"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1] and 0 < outputs[0]["f1"] < 1
    assert score(["--gold", f"{gcs_prefix}/gold.txt", "--pred", f"{gcs_prefix}/missing.txt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {gcs_prefix}/missing.txt: no such file; check the path"


def test_the_server_is_what_the_clients_reach(gcs_server):
    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs_server.url


def test_a_gs_folder_listed_again_shows_what_was_written_since(gcs_server, gcs_prefix):
    """No listings cache: a reader polling a run folder (a checkpoint appearing, a resume after a kill) sees the
    folder as it is now, not as it was at the first listing."""
    folder = files.location(f"{gcs_prefix}/run")
    assert not folder.is_dir()
    files.atomic_write_text(f"{gcs_prefix}/run/a.txt", "a")
    assert [p.name for p in folder.iterdir()] == ["a.txt"]
    files.atomic_write_text(f"{gcs_prefix}/run/b.txt", "b")
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.txt"]
    files.remove_file(f"{gcs_prefix}/run/a.txt")
    assert [p.name for p in folder.iterdir()] == ["b.txt"] and not files.is_file(f"{gcs_prefix}/run/a.txt")


def test_staged_and_local_copy_carry_a_folder_to_gs_and_back(gcs_server, gcs_prefix, tmp_path):
    with files.staged(f"{gcs_prefix}/tok") as folder:
        (folder / "sub").mkdir()
        (folder / "tokenizer.json").write_text("{}")
        (folder / "sub" / "x.bin").write_bytes(b"\x00\x01")
    assert sorted(gcs_server.listing(f"{gcs_prefix}/tok/")) == sorted(
        f"{gcs_prefix.split('/', 3)[3]}/tok/{n}" for n in ("sub/x.bin", "tokenizer.json"))
    with files.local_copy(f"{gcs_prefix}/tok") as folder:
        assert (folder / "tokenizer.json").read_text() == "{}"
        assert (folder / "sub" / "x.bin").read_bytes() == b"\x00\x01"
    assert not folder.exists()  # the download is gone after the block
    with pytest.raises(files.StorageError, match="no such file"):
        with files.local_copy(f"{gcs_prefix}/nothing"):
            pass
