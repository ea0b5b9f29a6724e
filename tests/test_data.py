"""Tests of rnnlab/data.py and rnnlab/text8.py: corpora, the text8 download, and batching.

No network and no shared data: text8 is a small file in text8's format made here, served by a
local HTTP server; the batching reference is a plain Python loop over the 1-D ids.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import io
import pathlib
import threading
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import data

ALPHABET = " abcdefghijklmnopqrstuvwxyz"
UNREACHABLE = "http://127.0.0.1:1/text8.zip"  # Port 1: refused at once, no network needed.


def _base_data(**overrides):
    # The real config keys, so a renamed or retyped key in configs/base.py breaks a test here.
    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "base.py"
    spec = importlib.util.spec_from_file_location("rnnlab_test_base_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config().data
    config.update(overrides)
    return config


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch):
    # A proxy would route 127.0.0.1 elsewhere; a user's data dir must not leak into a test.
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "RNNLAB_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def text8_bytes() -> bytes:
    # Random words over a-z separated by single spaces, beginning with a space like text8.
    rng = np.random.default_rng(0)
    out = []
    while sum(map(len, out)) < 20_000:
        out.append(" " + "".join(rng.choice(list(ALPHABET[1:]), rng.integers(1, 10))))
    return "".join(out).encode()[:20_000]


@pytest.fixture(scope="module")
def text8_zip(text8_bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("text8", text8_bytes)
    return buffer.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(text8_zip):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = {"/text8.zip": text8_zip}
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}/text8.zip"
    httpd.shutdown()
    httpd.server_close()


def _sha1(b: bytes) -> str:
    return hashlib.sha1(b).hexdigest()


# ------------------------------------------------------------------------------------------------
# Split arithmetic


def test_split_sizes_are_exact():
    assert data.split_sizes(100_000_000, 0.05, 0.05) == (90_000_000, 5_000_000, 5_000_000)
    # Float arithmetic gives int(100 * 0.29) == 28; the decimal 0.29 of 100 is 29.
    assert data.split_sizes(100, 0.29, 0.0) == (71, 29, 0)
    assert data.split_sizes(10, 0.15, 0.15) == (8, 1, 1)  # floor for valid and test
    assert data.split_sizes(10, 0, 0) == (10, 0, 0)  # a zero fraction asks for no split


@pytest.mark.parametrize(
    "n, valid, test, words",
    [
        (100, 1.0, 0.0, "valid_fraction"),
        (100, 0.1, -0.1, "test_fraction"),
        (100, 0.5, 0.5, "< 1"),
        (10, 0.01, 0.1, "valid split"),
        (10, 0.1, 0.01, "test split"),
    ],
)
def test_split_sizes_errors(n, valid, test, words):
    with pytest.raises(ValueError, match=words):
        data.split_sizes(n, valid, test)


def test_bad_fractions_fail_before_any_download(tmp_path):
    with pytest.raises(ValueError, match="< 1"):
        data.load_corpus(
            _base_data(name="text8", dir=str(tmp_path), url=UNREACHABLE, valid_fraction=0.96)
        )


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="text8, text, pydoc, python_source"):
        data.load_corpus(_base_data(name="shakespeare"))


# ------------------------------------------------------------------------------------------------
# text8


def _check_text8_corpus(corpus, text8_bytes):
    assert corpus.vocab == data.Vocab(tuple(ALPHABET), None)
    assert {k: len(v) for k, v in corpus.splits.items()} == {
        "train": 18_000, "valid": 1_000, "test": 1_000
    }
    assert all(v.dtype == np.uint8 for v in corpus.splits.values())
    assert corpus.unknown == {"train": 0, "valid": 0, "test": 0}
    # Space is id 0 and a..z are 1..26, checked against the bytes, not through decode.
    expected = np.array([ALPHABET.index(chr(b)) for b in text8_bytes])
    got = np.concatenate([corpus.splits[k] for k in ("train", "valid", "test")])
    np.testing.assert_array_equal(got, expected)
    assert "\n" not in corpus.description and "18,000" in corpus.description


def test_text8_user_zip_is_used_without_download(tmp_path, text8_zip, text8_bytes):
    (tmp_path / "text8.zip").write_bytes(text8_zip)
    config = _base_data(name="text8", dir=str(tmp_path), url=UNREACHABLE, sha1=_sha1(text8_zip))
    _check_text8_corpus(data.load_corpus(config), text8_bytes)
    assert (tmp_path / "text8").read_bytes() == text8_bytes
    assert (tmp_path / "text8.zip").read_bytes() == text8_zip  # the user's file is kept


def test_text8_dir_from_environment(tmp_path, monkeypatch, text8_bytes):
    (tmp_path / "text8").write_bytes(text8_bytes)
    monkeypatch.setenv("RNNLAB_DATA_DIR", str(tmp_path))
    corpus = data.load_corpus(_base_data(name="text8", dir="", url=UNREACHABLE))
    _check_text8_corpus(corpus, text8_bytes)


def test_text8_download_is_verified_and_cached(tmp_path, server, text8_zip, text8_bytes):
    httpd, url = server
    directory = tmp_path / "new" / "dir"  # created by the download
    config = _base_data(name="text8", dir=str(directory), url=url, sha1=_sha1(text8_zip))
    _check_text8_corpus(data.load_corpus(config), text8_bytes)
    assert httpd.requests == ["/text8.zip"]
    assert sorted(p.name for p in directory.iterdir()) == ["text8", "text8.zip"]
    _check_text8_corpus(data.load_corpus(config), text8_bytes)
    (directory / "text8").unlink()  # the cached zip is unzipped again, still no download
    _check_text8_corpus(data.load_corpus(config), text8_bytes)
    assert httpd.requests == ["/text8.zip"]


def test_text8_download_with_wrong_checksum(tmp_path, server, text8_zip):
    httpd, url = server
    wrong = "0" * 40
    with pytest.raises(data.DataError) as e:
        data.load_corpus(_base_data(name="text8", dir=str(tmp_path), url=url, sha1=wrong))
    message = str(e.value)
    assert wrong in message and _sha1(text8_zip) in message and str(tmp_path) in message
    assert httpd.requests == ["/text8.zip"]
    assert list(tmp_path.iterdir()) == []  # nothing unzipped, no unverified zip, no temp file


def test_text8_user_zip_with_wrong_checksum_is_kept_not_unzipped(tmp_path, text8_zip):
    (tmp_path / "text8.zip").write_bytes(text8_zip)
    wrong = "f" * 40
    with pytest.raises(data.DataError) as e:
        data.load_corpus(_base_data(name="text8", dir=str(tmp_path), url=UNREACHABLE, sha1=wrong))
    message = str(e.value)
    assert wrong in message and _sha1(text8_zip) in message and str(tmp_path) in message
    assert [p.name for p in tmp_path.iterdir()] == ["text8.zip"]
    assert (tmp_path / "text8.zip").read_bytes() == text8_zip


def test_text8_offline_says_where_to_put_the_file(tmp_path):
    with pytest.raises(data.DataError) as e:
        data.load_corpus(_base_data(name="text8", dir=str(tmp_path), url=UNREACHABLE))
    message = str(e.value)
    assert UNREACHABLE in message
    assert str(tmp_path / "text8.zip") in message and str(tmp_path / "text8") in message
    assert list(tmp_path.iterdir()) == []


def test_text8_with_a_bad_byte(tmp_path, text8_bytes):
    corrupt = bytearray(text8_bytes)
    corrupt[1234] = ord("A")
    corrupt[5000] = ord("\n")
    (tmp_path / "text8").write_bytes(bytes(corrupt))
    with pytest.raises(data.DataError, match=r"b'A' at offset 1234 "):
        data.load_corpus(_base_data(name="text8", dir=str(tmp_path), url=UNREACHABLE))


def test_encode_without_unk_rejects_unknown_characters():
    vocab = data.Vocab(tuple(ALPHABET), None)
    np.testing.assert_array_equal(data.encode(vocab, "ab z"), [1, 2, 0, 26])
    with pytest.raises(ValueError, match="'A' at position 2"):
        data.encode(vocab, "abA")


# ------------------------------------------------------------------------------------------------
# text, pydoc, python_source


def test_text_vocab_from_train_and_unknowns_counted(tmp_path):
    train, valid, test = "ab é\n" * 4, "abxé abxé ", "日日 zzab ab"  # 20 / 10 / 10 characters
    path = tmp_path / "corpus.txt"
    assert (len(train), len(valid), len(test)) == (20, 10, 10)
    path.write_text(train + valid + test, encoding="utf-8")
    corpus = data.load_corpus(
        _base_data(name="text", path=str(path), valid_fraction=0.25, test_fraction=0.25)
    )
    assert corpus.vocab == data.Vocab(("\n", " ", "a", "b", "é", "\ufffd"), 5)
    assert corpus.unknown == {"train": 0, "valid": 2, "test": 4}
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        expected = [corpus.vocab.chars.index(c) if c in train else 5 for c in text]
        np.testing.assert_array_equal(corpus.splits[name], expected)
        assert corpus.splits[name].dtype == np.uint8
    assert data.to_text(corpus.vocab, corpus.splits["test"]) == "\ufffd\ufffd \ufffd\ufffdab ab"


def test_text_with_the_unknown_symbol_in_train_and_an_empty_test_split(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("b\ufffda\U0001f600" * 4 + "cab\ufffd", encoding="utf-8")
    corpus = data.load_corpus(
        _base_data(name="text", path=str(path), valid_fraction=0.2, test_fraction=0.0)
    )
    # U+FFFD read from the train text is the unknown symbol itself, not a second copy of it;
    # the emoji sorts after it.
    assert corpus.vocab == data.Vocab(("a", "b", "\ufffd", "\U0001f600"), 2)
    np.testing.assert_array_equal(corpus.splits["valid"], [2, 0, 1, 2])
    assert corpus.unknown == {"train": 0, "valid": 1, "test": 0}
    assert len(corpus.splits["test"]) == 0


def test_the_one_vocabulary_builder_appends_the_unknown_symbol_or_sorts_it_in():
    emoji = "\U0001f600"  # above U+FFFD: where the two orders differ
    chars = "ba" + emoji + "ab"
    assert data.vocab_of(chars) == data.Vocab(("a", "b", emoji, "\ufffd"), 3)
    assert data.vocab_of(chars, unk_sorted_in=True) == data.Vocab(("a", "b", "\ufffd", emoji), 2)
    assert data.vocab_of("b\ufffda") == data.Vocab(("a", "b", "\ufffd"), 2)  # not a second one
    assert data.vocab_of("") == data.Vocab(("\ufffd",), 0)
    assert data.decode is data.to_text  # (the old name)


def test_text_max_chars_truncates_before_splitting(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abcdefghij" * 10, encoding="utf-8")
    config = _base_data(
        name="text", path=str(path), max_chars=40, valid_fraction=0.25, test_fraction=0.25
    )
    corpus = data.load_corpus(config)
    assert data.to_text(corpus.vocab, corpus.splits["test"]) == "abcdefghij"
    assert [len(corpus.splits[k]) for k in ("train", "valid", "test")] == [20, 10, 10]
    assert "the first of 100" in corpus.description


def test_text_bad_utf8_names_path_and_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("héllo ".encode() + b"\xff world")
    message = r"bad\.txt is not valid UTF-8: byte b'\\xff' at byte offset 7 "
    with pytest.raises(data.DataError, match=message):
        data.load_corpus(_base_data(name="text", path=str(path)))


def test_text_missing_file_names_path(tmp_path):
    path = tmp_path / "nowhere" / "input.txt"
    with pytest.raises(data.DataError, match=str(path)):
        data.load_corpus(_base_data(name="text", path=str(path)))


def test_pydoc_loads_offline_and_round_trips():
    corpus = data.load_corpus(_base_data(name="pydoc"))
    assert sum(map(len, corpus.splits.values())) > 100_000
    assert corpus.vocab.chars[:-1] == tuple(sorted(corpus.vocab.chars[:-1]))
    assert corpus.vocab.chars[corpus.vocab.unk] == "\ufffd"
    assert corpus.unknown["train"] == 0
    text = data.to_text(corpus.vocab, corpus.splits["train"][:5000])
    assert "assert" in text  # the first topic in sorted order is "assert"
    np.testing.assert_array_equal(data.encode(corpus.vocab, text), corpus.splits["train"][:5000])
    assert data.to_text(corpus.vocab, data.encode(corpus.vocab, text)) == text


def test_python_source_loads():
    corpus = data.load_corpus(_base_data(name="python_source", max_chars=200_000))
    text = data.to_text(corpus.vocab, corpus.splits["train"])
    assert "def " in text and "import " in text
    assert [len(corpus.splits[k]) for k in ("train", "valid", "test")] == [180_000, 10_000, 10_000]


# ------------------------------------------------------------------------------------------------
# Batching


def _reference_batch(ids, batch_size, bptt_len, index):
    # From the 1-D ids directly: stream b starts at b * L; window w starts w * T into it.
    length = len(ids) // batch_size
    windows = (length - 1) // bptt_len
    w = index % windows
    inputs, targets, reset = [], [], []
    for b in range(batch_size):
        start = b * length + w * bptt_len
        inputs.append([int(ids[start + t]) for t in range(bptt_len)])
        targets.append([int(ids[start + t + 1]) for t in range(bptt_len)])
        reset.append([t == 0 and w == 0 for t in range(bptt_len)])
    return {"inputs": np.array(inputs), "targets": np.array(targets), "reset": np.array(reset)}


def test_get_batch_matches_reference_eagerly_and_under_jit():
    ids = np.random.default_rng(1).integers(0, 200, size=1003).astype(np.uint8)
    batch_size, bptt_len = 4, 7  # L = 250, 249 // 7 = 35 windows, 3 characters dropped
    streams = data.make_streams(ids, batch_size)
    assert streams.shape == (4, 250)
    windows = data.num_windows(streams.shape[1], bptt_len)
    assert windows == 35
    traces = []

    def batch(streams, index):
        traces.append(index)
        return data.get_batch(streams, index, bptt_len, num_windows=windows)

    jitted = jax.jit(batch)
    device_streams = jnp.asarray(streams)
    for index in (0, 1, 5, 34, 35, 36, 69, 70, 1000):
        expected = _reference_batch(ids, batch_size, bptt_len, index)
        for got in (batch(device_streams, index), jitted(device_streams, jnp.int32(index))):
            assert set(got) == {"inputs", "targets", "reset"}
            for k in ("inputs", "targets"):
                assert got[k].dtype == jnp.int32 and got[k].shape == (4, 7)
            assert got["reset"].dtype == jnp.bool_
            for k, v in expected.items():
                np.testing.assert_array_equal(np.asarray(got[k]), v, err_msg=f"{k} at {index}")
    assert sum(isinstance(t, jax.core.Tracer) for t in traces) == 1


def test_one_pass_scores_each_position_once():
    ids = np.arange(2 * 23) % 256
    streams = data.make_streams(ids, 2)  # L = 23: 22 // 5 = 4 windows of 5
    assert data.num_windows(streams.shape[1], 5) == 4
    targets = [data.get_batch(streams, i, 5, num_windows=4)["targets"] for i in range(4)]
    np.testing.assert_array_equal(np.concatenate(targets, axis=1), streams[:, 1:21])


def test_batching_errors():
    with pytest.raises(ValueError, match="split of 7 chars is too short for batch_size 4"):
        data.make_streams(np.zeros(7, np.uint8), 4)
    with pytest.raises(ValueError, match="bptt_len 10 is longer .* at most bptt_len 9"):
        data.num_windows(10, 10)
    assert data.num_windows(10, 9) == 1
    with pytest.raises(ValueError, match="num_windows"):
        data.get_batch(jnp.zeros((2, 10), jnp.uint8), 0, 5, num_windows=2)
