from longapps.index.lexical import BM25Index, split_identifier, tokenize


def test_identifier_splitting():
    assert split_identifier("parseHTTPResponse") == ["parse", "http", "response"]
    assert split_identifier("read_file_v2") == ["read", "file", "v", "2"]
    toks = tokenize("def getUserName(self): return self.user_name", stem=False)
    assert "get" in toks and "user" in toks and "name" in toks and "getusername" in toks
    assert "self" not in toks and "return" not in toks


def test_bm25_ranks_and_roundtrips(tmp_path):
    docs = ["def parse_json(text): decode a json document", "class HttpClient: send requests",
            "def write_csv(rows, path): write rows"]
    idx = BM25Index().fit(tokenize(d) for d in docs)
    s = idx.scores(tokenize("parse the JSON text"))
    assert s.argmax() == 0 and s[1] == 0
    assert not idx.scores(tokenize("zebra")).any()
    idx.save(tmp_path / "bm")
    again = BM25Index.load(tmp_path / "bm")
    assert (again.scores(tokenize("write rows to csv")) == idx.scores(tokenize("write rows to csv"))).all()


def test_bm25_empty_corpus(tmp_path):
    idx = BM25Index().fit([])
    assert idx.scores(["x"]).shape == (0,)
    idx.save(tmp_path / "e")
    assert BM25Index.load(tmp_path / "e").n_docs == 0
