"""The Python API of `longapps match` on the example corpus (offline)."""
from pathlib import Path

from longapps import Matcher

here = Path(__file__).parent
m = Matcher(corpus=here / "corpus")          # or Matcher.load("my-smith-folder", corpus=...)
print("score:", round(m.score(here / "corpus/sklearn_pca.txt", here / "corpus/sklearn_nmf.txt"), 3))
for hit in m.related(here / "corpus/asyncio_tasks.txt", k=3):
    print(hit.rank, hit.path, hit.score)
