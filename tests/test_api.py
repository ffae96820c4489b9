import pytest

import longapps


def test_lazy_exports_and_load_pipeline(tmp_path):
    assert longapps.CodeSearch.__name__ == "CodeSearch"
    from longapps.attention import attention

    assert callable(attention) and longapps.Ranker.__name__ == "Ranker"
    (tmp_path / "a.py").write_text("def f():\n    return 1\n")
    cs = longapps.load_pipeline("search-code", tmp_path, index_dir=tmp_path / "idx")
    assert isinstance(cs, longapps.CodeSearch)
    with pytest.raises(ValueError, match="name"):
        longapps.load_pipeline("nope")
    with pytest.raises(AttributeError):
        longapps.not_a_thing  # noqa: B018
