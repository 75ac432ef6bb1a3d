"""The caches under artifacts/ never unpickle: a pickled row is a miss, not code run."""

import pickle

import diskcache
import numpy as np
import pytest

from nsclc_engine.diskstore import arrays_from_bytes, arrays_to_bytes, open_cache
from nsclc_engine.preprocess.cache import VolumeCache

RAN = []


def record(what: str) -> None:
    RAN.append(what)


class Payload:
    """Unpickling it calls :func:`record`: the stand-in for any code."""

    def __reduce__(self):
        return (record, ("code ran",))


def test_a_crafted_pickled_entry_is_ignored_not_run(tmp_path, caplog):
    with diskcache.Cache(str(tmp_path)) as plain:  # what an attacker with write access stores
        plain.set("key", Payload())
        plain.set("big", Payload(), read=False)
    assert pickle.loads(pickle.dumps(Payload())) is None and RAN == ["code ran"]
    RAN.clear()
    with open_cache(tmp_path) as cache:
        assert cache.get("key") is None and cache.get("big") is None
        cache.set("key", "text")
        assert cache.get("key") == "text"
        with pytest.raises(TypeError, match="stores str or bytes"):
            cache.set("other", {"a": 1})
    assert RAN == [] and "pickled entry is ignored" in caplog.text


def test_a_crafted_pickled_key_is_never_unpickled(tmp_path, caplog):
    """diskcache unpickles a key marked "not raw" wherever it reads keys back (iterating, or
    taking the oldest entry); a safe cache hands such a key back as bytes."""
    with diskcache.Cache(str(tmp_path)) as plain:
        plain.set(("tuple", "key"), "x")  # a non-raw key: stored pickled
        plain.set("fine", "y")
    with diskcache.Cache(str(tmp_path)) as plain:  # the attacker's payload in the key column
        plain._sql("UPDATE Cache SET key = ? WHERE raw = 0", (pickle.dumps(Payload()),))
    with open_cache(tmp_path) as cache:
        keys = list(cache)
        assert "fine" in keys and any(isinstance(key, bytes) for key in keys)
        assert cache.peekitem(last=False)[1] == "x"
        with pytest.raises(TypeError, match="str or bytes keys"):
            cache.set(("tuple", "key"), "x")
    assert RAN == [] and "pickled key is read as bytes" in caplog.text


def test_the_volume_cache_index_holds_json_and_recomputes_a_pickled_entry(tmp_path):
    with VolumeCache(tmp_path) as cache:
        cache.put("k" * 64, "P1", np.ones((2, 3, 4)), np.zeros((2, 3, 4), bool), {"a": 1})
        assert cache.get("k" * 64).metadata == {"a": 1}
    with diskcache.Cache(str(tmp_path / "index")) as plain:
        plain.set("k" * 64, Payload())
    with VolumeCache(tmp_path) as cache:
        assert cache.get("k" * 64) is None  # a miss: the caller rebuilds the entry
    assert RAN == []


def test_arrays_round_trip_without_pickle():
    scores = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    back = arrays_from_bytes(arrays_to_bytes(scores=scores, flags=np.array([1, 2], np.uint8)))
    assert np.array_equal(back["scores"], scores) and back["flags"].tolist() == [1, 2]
