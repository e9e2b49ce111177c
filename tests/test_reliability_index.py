"""Issue 15: duplicates, failed updates, damaged indexes (findings 1, 2, 3 and 7).

Each test reproduces what a careless or hostile user did: the same file under two names, uploading a
file twice, a removal or upload whose index update fails, a changed file that no longer loads, a build
in which every file fails, an index whose files were damaged. Nothing already indexed may be lost, and
every failure is one line naming the file, never a traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import rag.service as service_mod
from rag.errors import ConfigError, IndexCorruptError, RagError
from rag.index.build import build_index
from rag.index.layout import current_generation
from rag.index.manifest import Manifest
from rag.index.reader import IndexStore
from rag.service import RagService
from rag.settings import Settings

MEMO = "notes/water-memo.txt"
PDF = "reports/grid-report.pdf"


def _store_state(index: Path) -> tuple[dict[str, int], int]:
    store = IndexStore(index)
    try:
        assert store.check() == [], store.check()
        return {d.source: d.n_chunks for d in store.documents()}, len(store)
    finally:
        store.close()


# -- 1. identical content under two names ----------------------------------------------------


def test_identical_files_are_indexed_once_with_both_sources(index_copy, embedder):
    corpus, index = index_copy
    docs0, n0 = _store_state(index)
    shutil.copy(corpus / MEMO, corpus / "notes/water-memo (copy).txt")
    shutil.copy(corpus / MEMO, corpus / "plans/memo-again.txt")  # and a third name, in the same build
    s = Settings(corpus=corpus, index=index)
    res = build_index(s, embedder=embedder)  # was: IntegrityError: UNIQUE constraint failed: chunks.faiss_id
    assert set(res.duplicates) == {"notes/water-memo (copy).txt", "plans/memo-again.txt"}
    assert set(res.duplicates.values()) == {MEMO}
    assert "same content as notes/water-memo.txt (indexed once)" in res.summary()
    docs, n = _store_state(index)
    assert n == n0, "the duplicate's chunks were indexed twice"
    assert docs["notes/water-memo (copy).txt"] == 0 and docs[MEMO] == docs0[MEMO]
    store = IndexStore(index)
    dups = {d.source: d.duplicate_of for d in store.documents() if d.duplicate_of}
    assert dups == {"notes/water-memo (copy).txt": MEMO, "plans/memo-again.txt": MEMO}
    # a filter naming the duplicate finds the chunks indexed under its twin
    ids = store.ids_matching({"source": ["plans/memo-again.txt"]})
    assert ids is not None and len(ids) == docs0[MEMO]
    m = Manifest.read(index)
    assert m is not None and m.documents["plans/memo-again.txt"].duplicate_of == MEMO
    # the next build has nothing to do, and a full rebuild gives the same picture
    assert not build_index(s, embedder=embedder).changed
    full = build_index(s, full=True, embedder=embedder)
    assert full.chunks_total == n0 and len(full.duplicates) == 2


@pytest.mark.parametrize("how", ["remove", "change"])
def test_duplicate_is_indexed_itself_when_its_twin_goes(index_copy, embedder, how):
    corpus, index = index_copy
    docs0, n0 = _store_state(index)
    shutil.copy(corpus / MEMO, corpus / "notes/zz-copy.txt")
    s = Settings(corpus=corpus, index=index)
    build_index(s, embedder=embedder)
    if how == "remove":
        (corpus / MEMO).unlink()
    else:
        (corpus / MEMO).write_text(
            "WATER MEMO, second edition.\n\nGrants now reach twelve million dollars per utility.\n"
        )
    res = build_index(s, embedder=embedder)
    assert "notes/zz-copy.txt" in res.updated and not res.skipped
    if how == "remove":  # its twin's vectors are reused, not embedded again
        assert res.chunks_embedded == 0 and res.chunks_reused == docs0[MEMO]
    docs, _ = _store_state(index)
    assert docs["notes/zz-copy.txt"] == docs0[MEMO], "the duplicate's content left the index with its twin"
    store = IndexStore(index)
    assert not [d for d in store.documents() if d.duplicate_of]
    hits = store.ids_matching({"source": ["notes/zz-copy.txt"]})
    assert hits is not None and len(hits) == docs0[MEMO]


def test_serve_starts_on_a_corpus_with_duplicates(fixture_corpus, tmp_path, embedder):
    shutil.copy(fixture_corpus / MEMO, fixture_corpus / "notes/again.txt")
    s = Settings(corpus=fixture_corpus, index=tmp_path / "index")
    svc = RagService.start(s, embedder=embedder)  # what `rag serve` does before it listens
    assert not svc.needs_build()
    assert svc.search(["drought resilience grants for rural water utilities"], 3)[0]
    assert svc.status()["duplicates"] == {MEMO: "notes/again.txt"}  # the first name in corpus order is indexed


def _upload(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / "upload-tmp" / name
    p.parent.mkdir(exist_ok=True)
    p.write_text(text)
    return p


def test_uploading_the_same_file_twice_is_refused_and_leaves_nothing(index_copy, embedder, tmp_path):
    corpus, index = index_copy
    svc = RagService(Settings(corpus=corpus, index=index), embedder=embedder)
    note = "# Salt note\n\nCounty salt sheds must be inspected every autumn by the road department.\n"
    res, saved, rejected = svc.add_files([(_upload(tmp_path, "note.md", note), "note.md")])
    assert saved == ["uploads/note.md"] and not rejected and res is not None
    res, saved, rejected = svc.add_files([(_upload(tmp_path, "note.md", note), "note.md")])
    assert res is None and saved == []
    assert len(rejected) == 1 and "same content is already in the corpus as uploads/note.md" in rejected[0]
    # the same content under another name, and twice in one batch
    _, saved, rejected = svc.add_files([(_upload(tmp_path, "other.md", note), "other.md")])
    assert saved == [] and "uploads/note.md" in rejected[0]
    fresh = "# Gravel note\n\nGravel roads are graded twice a year.\n"
    _, saved, rejected = svc.add_files(
        [(_upload(tmp_path, "a.md", fresh), "a.md"), (_upload(tmp_path, "b.md", fresh), "b.md")]
    )
    assert saved == ["uploads/a.md"] and "as uploads/a.md" in rejected[0]
    assert sorted(p.name for p in (corpus / "uploads").iterdir()) == ["a.md", "note.md"]  # no note-2.md, no .part
    docs, _ = _store_state(index)
    assert {"uploads/note.md", "uploads/a.md"} <= set(docs)
    # and uploads and removals keep working afterwards
    svc.remove_document("uploads/note.md")
    assert not (corpus / "uploads/note.md").exists() and "uploads/note.md" not in _store_state(index)[0]


def test_upload_is_rolled_back_when_the_index_update_fails(index_copy, embedder, tmp_path, monkeypatch):
    corpus, index = index_copy
    svc = RagService(Settings(corpus=corpus, index=index), embedder=embedder)
    gen0 = current_generation(index)

    def broken(*a, **kw):
        raise RagError("disk full (simulated)")

    monkeypatch.setattr(service_mod, "build_index", broken)
    with pytest.raises(RagError, match="simulated"):
        svc.add_files([(_upload(tmp_path, "n.md", "# N\n\nNitrate limits for wells.\n"), "n.md")])
    assert not list((corpus / "uploads").glob("*")) and not list((corpus / "uploads").glob(".*"))
    assert current_generation(index) == gen0
    monkeypatch.undo()
    _, saved, rejected = svc.add_files([(_upload(tmp_path, "n.md", "# N\n\nNitrate limits for wells.\n"), "n.md")])
    assert saved == ["uploads/n.md"] and not rejected


def test_removal_of_an_upload_is_atomic_across_file_and_index(index_copy, embedder, tmp_path, monkeypatch):
    corpus, index = index_copy
    svc = RagService(Settings(corpus=corpus, index=index), embedder=embedder)
    up = "uploads/culverts.md"
    text = "# Culverts\n\nCulverts under county roads are cleared before the spring thaw.\n"
    assert svc.add_files([(_upload(tmp_path, "culverts.md", text), "culverts.md")])[1] == [up]

    def broken(*a, **kw):
        assert not (corpus / up).exists(), "the build must not see the file being removed"
        raise RagError("build failed (simulated)")

    monkeypatch.setattr(service_mod, "build_index", broken)
    with pytest.raises(RagError, match="simulated"):
        svc.remove_document(up)
    # the index still serves it, so the file is still there (and nothing hidden is left beside it)
    assert (corpus / up).read_text() == text and up in _store_state(index)[0]
    assert [p.name for p in (corpus / "uploads").iterdir()] == ["culverts.md"]
    monkeypatch.undo()
    svc.remove_document(up)
    assert not (corpus / up).exists() and up not in _store_state(index)[0]
    assert not list((corpus / "uploads").iterdir())
    assert not build_index(Settings(corpus=corpus, index=index), embedder=embedder).changed


# -- 2. a changed file that fails to load keeps its indexed version --------------------------------


def test_broken_update_keeps_the_previous_version(index_copy, embedder, cli, capsys):
    corpus, index = index_copy
    docs0, n0 = _store_state(index)
    data = (corpus / PDF).read_bytes()
    (corpus / PDF).write_bytes(data[: len(data) // 3])  # truncated in place
    s = Settings(corpus=corpus, index=index)
    res = build_index(s, embedder=embedder)
    assert [e.path for e in res.kept] == [PDF] and not res.skipped
    assert f"kept previous version of {PDF}: " in res.summary()
    docs, n = _store_state(index)
    assert docs == docs0 and n == n0, "the good version was dropped"
    st = RagService(s, embedder=embedder).status()
    assert [k["source"] for k in st["kept"]] == [PDF] and st["changed_since"]["changed"] == [PDF]
    code, out, _ = cli(capsys, "index", "status", "--corpus", str(corpus), "--index", str(index))
    assert code == 0 and f"kept previous version of {PDF}" in out
    # fixed file: indexed again, the note goes away
    (corpus / PDF).write_bytes(data + b"\n")
    res = build_index(s, embedder=embedder)
    assert res.updated == [PDF] and not res.kept
    assert RagService(s, embedder=embedder).status()["kept"] == []


def test_build_where_every_file_fails_never_publishes_an_empty_index(index_copy, embedder):
    corpus, index = index_copy
    docs0, n0 = _store_state(index)
    gen0 = current_generation(index)
    for f in [p for p in corpus.rglob("*") if p.is_file()]:
        f.write_bytes(
            b"%PDF-1.4\n" if f.suffix == ".pdf" else b"PK\x03\x04 broken" if f.suffix == ".docx" else b"   \n"
        )
    # other chunk settings: the old rows cannot be kept, and an empty index must not replace them
    other = Settings(corpus=corpus, index=index, chunking={"tokens": 120, "overlap": 16})
    with pytest.raises(RagError, match="every file failed to load .*left as it was"):
        build_index(other, full=True, embedder=embedder)
    assert current_generation(index) == gen0 and _store_state(index) == (docs0, n0)
    s = Settings(corpus=corpus, index=index)
    res = build_index(s, embedder=embedder)  # incremental: each keeps its indexed version
    assert len(res.kept) == len(docs0) and _store_state(index) == (docs0, n0)
    res = build_index(s, full=True, embedder=embedder)  # --full with the same settings: the same
    assert len(res.kept) == len(docs0) and not res.skipped and _store_state(index) == (docs0, n0)


def test_full_rebuild_keeps_the_indexed_version_of_a_broken_file(index_copy, embedder):
    corpus, index = index_copy
    docs0, n0 = _store_state(index)
    shutil.copy(corpus / MEMO, corpus / "notes/copy.txt")
    s = Settings(corpus=corpus, index=index)
    build_index(s, embedder=embedder)
    (corpus / PDF).write_bytes((corpus / PDF).read_bytes()[:300])
    res = build_index(s, full=True, embedder=embedder)
    assert [e.path for e in res.kept] == [PDF] and f"kept previous version of {PDF}" in res.summary()
    docs, n = _store_state(index)
    assert n == n0 and docs[PDF] == docs0[PDF] and sorted([docs["notes/copy.txt"], docs[MEMO]]) == [0, docs0[MEMO]]


@pytest.mark.slow
def test_truncated_shipped_pdf_keeps_its_chunks(shipped_index, embedder, tmp_path):
    """The issue's repro: M-24-10 truncated in a copy of the shipped corpus (it held 125 chunks)."""
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(shipped_index.corpus, corpus)
    shutil.copytree(shipped_index.index, index)
    docs0, n0 = _store_state(index)
    pdf = next(corpus.rglob("M-24-10*.pdf"))
    src = pdf.relative_to(corpus).as_posix()
    pdf.write_bytes(pdf.read_bytes()[:20000])
    res = build_index(Settings(corpus=corpus, index=index), embedder=embedder)
    assert [e.path for e in res.kept] == [src] and res.documents_total == len(docs0)
    assert _store_state(index) == (docs0, n0) and docs0[src] > 100


# -- 3 and 7. damaged indexes: reported, refused with the way out, never a traceback ------------------


def _damage(index: Path, how: str) -> None:
    gen = current_generation(index)
    assert gen is not None
    if how == "bm25":
        shutil.rmtree(gen / "bm25")
    elif how == "faiss":
        f = gen / "faiss.index"
        f.write_bytes(f.read_bytes()[:200])
    elif how == "sqlite":
        (gen / "chunks.sqlite").unlink()


@pytest.mark.parametrize("how", ["bm25", "faiss", "sqlite"])
def test_damaged_index_is_reported_and_a_build_says_to_rebuild(index_copy, embedder, how):
    corpus, index = index_copy
    _damage(index, how)
    s = Settings(corpus=corpus, index=index)
    svc = RagService(s, embedder=embedder)
    r = svc.check()
    assert not r["ok"] and r["problems"]
    st = svc.status()
    assert st["damaged"], "status must not call a damaged index up to date"
    (corpus / "notes/new.txt").write_text("A new note on culverts and their yearly inspection.\n")
    with pytest.raises(IndexCorruptError, match=r"run `rag index build --full`"):
        build_index(s, embedder=embedder)
    if how != "bm25":
        with pytest.raises(IndexCorruptError, match="--full"):
            IndexStore(index)
    res = build_index(s, full=True, embedder=embedder)  # the way out works
    assert res.documents_total == 6 and RagService(s, embedder=embedder).check()["ok"]


def test_index_path_that_is_a_file_is_a_config_error(tmp_path, fixture_corpus, embedder):
    f = tmp_path / "index.txt"
    f.write_text("not an index")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        build_index(Settings(corpus=fixture_corpus, index=f), embedder=embedder)
    with pytest.raises(ConfigError, match="lies under"):
        RagService(Settings(corpus=fixture_corpus, index=f / "sub")).status()


@pytest.mark.parametrize(
    "key,value",
    [
        ("documents", ["a", "b"]),
        ("counts", {"chunks": "many"}),
        ("embedding", "minilm"),
        ("faiss", "flat"),
        ("last_build", "yesterday"),
        ("chunking", None),
        ("build_seconds", [1]),
        ("documents", {"x.md": {"doc_id": "d", "chunks": None}}),
    ],
)
def test_manifest_with_wrong_types_is_one_line(index_copy, cli, capsys, key, value):
    corpus, index = index_copy
    gen = current_generation(index)
    m = json.loads((gen / "manifest.json").read_text())
    m[key] = value
    (gen / "manifest.json").write_text(json.dumps(m))
    for args in (["index", "status", "--corpus", str(corpus)], ["index", "check"], ["docs"]):
        code, out, err = cli(capsys, *args, "--index", str(index))  # a traceback would escape main() here
        assert "Traceback" not in err
        if code and args[1:] == ["check"] and out:
            assert code == 5 and out.startswith("problem: "), (out, err)
        elif code:
            assert code in (4, 5) and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_garbled_current_is_reported_and_full_rebuild_replaces_it(index_copy, embedder):
    corpus, index = index_copy
    (index / "CURRENT").write_text("../../etc\n")  # was: a generation outside the index, or the index folder itself
    s = Settings(corpus=corpus, index=index)
    for call in (
        lambda: RagService(s).status(),
        lambda: RagService(s).check(),
        lambda: build_index(s, embedder=embedder),
    ):
        with pytest.raises(IndexCorruptError, match="not a generation; run `rag index build --full`"):
            call()
    res = build_index(s, full=True, embedder=embedder)
    assert res.documents_total == 5 and RagService(s).check()["ok"]
