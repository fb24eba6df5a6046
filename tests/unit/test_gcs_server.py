"""The local GCS server (tests/gcs_server.py) serves the real clients with no network.

gcsfs (what etils.epath uses for gs:// without TensorFlow), tensorstore and Orbax, tensorboardX
(through google-cloud-storage); the four things gcp-storage-emulator lacks, each shown by a request
the bare emulator gets wrong and ours gets right; 403 under a forbidden prefix.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("gcp_storage_emulator")
gcsfs = pytest.importorskip("gcsfs")
requests = pytest.importorskip("requests")

from tests.gcs_server import BUCKET, bare_emulator, split_url  # noqa: E402


@pytest.fixture(scope="module")
def bare_url():
    """The unmodified emulator, to show what each fix changes."""
    with bare_emulator() as url:
        yield url


@pytest.fixture
def fs(gcs_server):
    return gcsfs.GCSFileSystem()


def _put(base: str, name: str, data: bytes, **query) -> requests.Response:
    return requests.post(f"{base}/upload/storage/v1/b/{BUCKET}/o",
                         params={"uploadType": "media", "name": name, **query}, data=data, timeout=10)


def _get(base: str, name: str, **query) -> requests.Response:
    return requests.get(f"{base}/storage/v1/b/{BUCKET}/o/{requests.utils.quote(name, safe='')}",
                        params=query, timeout=10)


def _key(url: str) -> str:
    return split_url(url)[1]


# ------------------------------------------------------------------------------------------ gcsfs
def test_gcsfs_write_read_list_remove(fs, gcs_prefix):
    fs.pipe_file(f"{gcs_prefix}/a.txt", b"alpha")
    fs.pipe_file(f"{gcs_prefix}/sub/b.json", b'{"b": 1}')
    assert fs.cat_file(f"{gcs_prefix}/a.txt") == b"alpha"
    assert fs.cat_file(f"{gcs_prefix}/a.txt", start=1, end=3) == b"lp"
    assert fs.info(f"{gcs_prefix}/sub/b.json")["size"] == 8
    assert sorted(fs.ls(gcs_prefix, detail=False)) == [f"{_bucket_key(gcs_prefix)}/a.txt",
                                                       f"{_bucket_key(gcs_prefix)}/sub"]
    assert fs.isdir(f"{gcs_prefix}/sub") and not fs.exists(f"{gcs_prefix}/nothing")
    assert sorted(fs.find(gcs_prefix)) == [f"{_bucket_key(gcs_prefix)}/a.txt",
                                           f"{_bucket_key(gcs_prefix)}/sub/b.json"]
    fs.rm(gcs_prefix, recursive=True)
    assert fs.find(gcs_prefix) == [] and not fs.exists(f"{gcs_prefix}/a.txt")


def _bucket_key(url: str) -> str:
    return url[len("gs://"):]


def test_gcsfs_single_object_upload_is_atomic(fs, gcs_server, gcs_prefix):
    """One object, whole or absent: a one-request upload; a multi-chunk one appears only when finished."""
    path = f"{gcs_prefix}/metrics.json"
    before = len(gcs_server.requests)
    fs.pipe_file(path, b'{"f1": 0.9}')
    writes = [r for r in list(gcs_server.requests)[before:] if r[0] != "GET"]
    assert len(writes) == 1 and "uploadType=multipart" in writes[0][1] and writes[0][2] == 200
    assert gcs_server.listing(gcs_prefix) == {_key(path): b'{"f1": 0.9}'}

    # exclusive create (ifGenerationMatch=0): never replaces an object that exists
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"other", mode="create")
    assert fs.cat_file(path) == b'{"f1": 0.9}'

    # a resumable upload sends chunks first: nothing is visible until the last one, nothing after a cancel
    big = f"{gcs_prefix}/big.bin"
    payload = np.random.default_rng(0).bytes(3 * 2**18 + 5)
    f = fs.open(big, "wb", block_size=2**18)
    f.write(payload[: 2 * 2**18 + 1])
    f.flush()
    assert f.location is not None and _key(big) not in gcs_server.listing(gcs_prefix)
    f.discard()  # DELETE on the session: 499, as GCS answers
    assert _key(big) not in gcs_server.listing(gcs_prefix) and not fs.exists(big)
    with fs.open(big, "wb", block_size=2**18) as f:
        f.write(payload[:2**18 + 7])
        f.flush()
        assert not fs.exists(big)
        f.write(payload[2**18 + 7:])
    assert gcs_server.listing(big)[_key(big)] == payload


# --------------------------------------------------------------------- the four fixes, bare vs ours
def test_downloads_carry_the_generation(gcs_server, bare_url, gcs_prefix):
    name = f"{_key(gcs_prefix)}/manifest"
    for base, fixed in ((bare_url, False), (gcs_server.url, True)):
        generation = _put(base, name, b"0123456789").json()["generation"]
        media = _get(base, name, alt="media")
        part = requests.get(f"{base}/storage/v1/b/{BUCKET}/o/{requests.utils.quote(name, safe='')}",
                            params={"alt": "media"}, headers={"Range": "bytes=2-5"}, timeout=10)
        assert media.content == b"0123456789" and part.status_code == 206 and part.content == b"2345"
        if fixed:
            assert media.headers["x-goog-generation"] == part.headers["x-goog-generation"] == generation
            assert media.headers["x-goog-metageneration"] == "1"
        else:
            assert "x-goog-generation" not in media.headers and "x-goog-generation" not in part.headers


def test_list_honours_start_and_end_offset(gcs_server, bare_url, gcs_prefix):
    key = _key(gcs_prefix)
    names = [f"{key}/c", f"{key}/ckpt/a", f"{key}/ckpt/b", f"{key}/ckpt0"]  # "c" is shorter than "ckpt/"
    query = {"prefix": f"{key}/", "startOffset": f"{key}/ckpt/", "endOffset": f"{key}/ckpt0"}
    for base, fixed in ((bare_url, False), (gcs_server.url, True)):
        for name in names:
            _put(base, name, b"x")
        listed = requests.get(f"{base}/storage/v1/b/{BUCKET}/o", params=query, timeout=10).json()["items"]
        got = [item["name"] for item in listed]
        assert (got == [f"{key}/ckpt/a", f"{key}/ckpt/b"]) is fixed, got

    # tensorstore lists a key range with startOffset/endOffset and no prefix; on the bare emulator it
    # receives names outside the range, shorter than its prefix, and aborts the process
    import tensorstore as ts

    kv = ts.KvStore.open({"driver": "gcs", "bucket": BUCKET, "path": f"{key}/ckpt/"}).result()
    assert sorted(kv.list().result()) == [b"a", b"b"]


def test_generation_preconditions(gcs_server, bare_url, gcs_prefix):
    name = f"{_key(gcs_prefix)}/config.json"
    for base, fixed in ((bare_url, False), (gcs_server.url, True)):
        generation = _put(base, name, b"first").json()["generation"]
        refused = _put(base, name, b"second", ifGenerationMatch="0")  # "only if it does not exist"
        assert (refused.status_code == 412) is fixed
        assert _get(base, name, alt="media").content == (b"first" if fixed else b"second")
        if fixed:
            assert _put(base, name, b"third", ifGenerationMatch="1").status_code == 412
            generation = _put(base, name, b"third", ifGenerationMatch=generation).json()["generation"]
            assert _get(base, name, alt="media", ifGenerationNotMatch=generation).status_code == 304
            assert _get(base, name, alt="media", ifGenerationMatch="1").status_code == 412
            delete = requests.delete(_get(base, name).url, params={"ifGenerationMatch": "1"}, timeout=10)
            assert delete.status_code == 412 and _get(base, name).status_code == 200

    # the clients see them: google-cloud-storage raises PreconditionFailed, tensorstore's
    # conditional write reports a mismatch instead of overwriting
    from google.api_core.exceptions import PreconditionFailed
    from google.cloud import storage

    blob = storage.Client().bucket(BUCKET).blob(name)
    with pytest.raises(PreconditionFailed):
        blob.upload_from_string(b"fourth", if_generation_match=0)
    import tensorstore as ts

    kv = ts.KvStore.open({"driver": "gcs", "bucket": BUCKET, "path": f"{_key(gcs_prefix)}/"}).result()
    stale = kv.read("config.json").result().stamp.generation
    assert kv.write("config.json", b"fifth", if_equal=stale).result().generation  # written
    assert not kv.write("config.json", b"sixth", if_equal=stale).result().generation  # refused
    assert kv.read("config.json").result().value == b"fifth"


def test_move_is_one_request(fs, gcs_server, bare_url, gcs_prefix):
    key = _key(gcs_prefix)
    for base, fixed in ((bare_url, False), (gcs_server.url, True)):
        _put(base, f"{key}/tmp.json", b"{}")
        moved = requests.post(f"{base}/storage/v1/b/{BUCKET}/o/{requests.utils.quote(f'{key}/tmp.json', safe='')}"
                              f"/moveTo/o/{requests.utils.quote(f'{key}/final.json', safe='')}", timeout=10)
        assert moved.status_code == (200 if fixed else 501)
    assert moved.json()["name"] == f"{key}/final.json"
    assert gcs_server.listing(gcs_prefix) == {f"{key}/final.json": b"{}"}

    start = time.perf_counter()
    fs.mv(f"{gcs_prefix}/final.json", f"{gcs_prefix}/renamed.json")
    assert time.perf_counter() - start < 5  # the bare emulator: ~32 s of retries, then copy + delete
    assert gcs_server.listing(gcs_prefix) == {f"{key}/renamed.json": b"{}"}
    assert [r for r in gcs_server.requests if "moveTo" in r[1]][-1][2] == 200


# --------------------------------------------------------------------------------- Orbax, tensorboardX
def test_orbax_save_and_restore(gcs_server, gcs_prefix):
    """Through tensorstore (OCDBT, the default); restored by new checkpointers and a new manager."""
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    tree = {"params": {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": jnp.ones(5)}, "step": 7}
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(f"{gcs_prefix}/single", tree)
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(f"{gcs_prefix}/single")
    np.testing.assert_array_equal(restored["params"]["w"], tree["params"]["w"])
    np.testing.assert_array_equal(restored["params"]["b"], np.ones(5))
    assert restored["step"] == 7
    assert any(name.endswith("manifest.ocdbt") for name in gcs_server.listing(f"{gcs_prefix}/single"))

    options = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False)
    with ocp.CheckpointManager(f"{gcs_prefix}/steps", options=options) as manager:
        for step in (1, 2):
            manager.save(step, args=ocp.args.StandardSave({"w": np.full(3, step, np.float32)}))
        manager.wait_until_finished()
    with ocp.CheckpointManager(f"{gcs_prefix}/steps", options=options) as manager:
        assert manager.all_steps() == [2]
        restored = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())
    np.testing.assert_array_equal(restored["w"], np.full(3, 2, np.float32))


def test_tensorboardx_writes_events(gcs_server, gcs_prefix):
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(f"{gcs_prefix}/tensorboard")
    writer.add_scalar("train/loss", 0.5, 1)
    writer.flush()  # a second upload of the same object: ifGenerationMatch=<the first one's generation>
    writer.add_scalar("train/loss", 0.25, 2)
    gcs_file = writer.file_writer.event_writer._ev_writer._py_recordio_writer._writer
    writer.close()  # uploads the whole event file once more
    # close() is not the end: tensorboardX's atexit hook keeps the GCSRecordWriter alive, and its
    # __del__ uploads again at interpreter exit (after this server is gone: 120 s of retries)
    assert type(gcs_file).__name__ == "GCSRecordWriter"
    gcs_file.flush = lambda: None
    (name, events), = gcs_server.listing(f"{gcs_prefix}/tensorboard").items()
    assert "events.out.tfevents." in name and len(events) > 0 and events.count(b"train/loss") == 2


# ---------------------------------------------------------------------------------------------- 403
def test_forbidden_prefix_answers_403(fs, gcs_server, gcs_prefix):
    from google.api_core.exceptions import Forbidden
    from google.cloud import storage

    fs.pipe_file(f"{gcs_prefix}/ro/existing.txt", b"kept")
    with gcs_server.forbid(f"{gcs_prefix}/ro"):
        with pytest.raises(OSError, match="Forbidden"):
            fs.pipe_file(f"{gcs_prefix}/ro/new.txt", b"x")
        with pytest.raises(OSError, match="Forbidden"):
            fs.rm(f"{gcs_prefix}/ro/existing.txt")
        with pytest.raises(Forbidden):
            storage.Client().bucket(BUCKET).blob(f"{_key(gcs_prefix)}/ro/new.txt").upload_from_string(b"x")
        import tensorstore as ts

        kv = ts.KvStore.open({"driver": "gcs", "bucket": BUCKET, "path": f"{_key(gcs_prefix)}/ro/"}).result()
        with pytest.raises(ValueError, match="403|PERMISSION_DENIED|ermission"):
            kv.write("new", b"x").result()
        assert fs.cat_file(f"{gcs_prefix}/ro/existing.txt") == b"kept"  # reads still allowed
        fs.pipe_file(f"{gcs_prefix}/rw.txt", b"ok")  # and writes beside the prefix
    with gcs_server.forbid(f"{gcs_prefix}/ro", reads=True):
        with pytest.raises(OSError, match="Forbidden"):
            fs.cat_file(f"{gcs_prefix}/ro/existing.txt")
    fs.pipe_file(f"{gcs_prefix}/ro/new.txt", b"x")  # the switch is off again
    assert sorted(gcs_server.listing(f"{gcs_prefix}/ro")) == [f"{_key(gcs_prefix)}/ro/existing.txt",
                                                            f"{_key(gcs_prefix)}/ro/new.txt"]
