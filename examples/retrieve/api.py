"""Python API of the retriever on this example corpus (offline: hybrid first stage without a Mamba model).

    python examples/retrieve/api.py
"""
from pathlib import Path

from longapps.pipelines.retriever import Retriever

here = Path(__file__).parent
r = Retriever(here / "corpus")                      # model="runs/mamba-ret" for a trained Mamba retriever
print("encoder:", r.encoder_description)
for q in (here / "queries.txt").read_text().splitlines():
    top = r.search(q, k=2)
    print(f"{q!r}: " + ", ".join(f"{h.id} ({h.score:.2f})" for h in top))
