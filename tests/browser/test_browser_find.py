"""Find what you need, in a real browser (JupyterLab): type a query in the search box, the
results open in the review grid and are labelled at once; a filter dims the map; without a text
tower the box is disabled and says why.

The notebook embeds 300 demo images with a tiny OpenCLIP (random weights, no download) and
prints the ranking the engine gives, so the test compares the grid with it; labels are read back
from the store file in this process.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from widgetpage import ROOT, root_data, root_sel, settle, state, wait_for

pytestmark = pytest.mark.browser

FIRST, SECOND = root_sel(0), root_sel(1)
N = 300
QUERY = "a photo of a bag"
CELL = """import json, os, tempfile
import numpy as np, open_clip
from alwidget import Labeller, datasets, embed
from alwidget.images import ImageSet
cfg = {{"embed_dim": 32, "vision_cfg": {{"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16}},
       "text_cfg": {{"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}}}
path = os.path.join(tempfile.mkdtemp(), "alwidget-browser-find-ViT.json")
open(path, "w").write(json.dumps(cfg))
open_clip.add_model_config(path)
SPEC = "openclip:alwidget-browser-find-ViT/random"
ds = datasets.demo()
images = ImageSet.from_arrays(ds.images[:{n}])
X = embed.embed_images(images, SPEC, device="cpu", progress=False).features
STORE = os.path.abspath({store!r})
w = Labeller(X, images=images, classes=list(ds.class_names), text_encoder=SPEC, projection="preview",
             store=STORE, batch_size=8)
print("WANT", json.dumps(w.search({query!r}, k=100, show=False).indices.tolist()), "STORE", STORE)
w"""
BARE = """w2 = Labeller(np.random.default_rng(0).standard_normal((50, 8)).astype("float32"), classes=["a", "b"],
              projection="preview", store=":memory:")
w2"""


@pytest.fixture(scope="module")
def find(lab):
    lab.write_notebook("find.ipynb", [CELL.format(n=N, store="find.sqlite", query=QUERY), BARE])
    page = lab.open("find.ipynb")
    lab.run_cell(page, 0, timeout_s=600)
    page.wait_for_selector(f'{ROOT}[data-alw-ready="1"]', timeout=180_000)
    out = "\n".join(lab.cell_texts(page))
    m = re.search(r"WANT (\[[\d, ]*\]) STORE (\S+)", out)
    assert m, out
    from alwidget import datasets
    from alwidget.images import ImageSet

    items = ImageSet.from_arrays(datasets.demo().images[:N]).items()
    page.locator(FIRST).scroll_into_view_if_needed()
    settle(page)
    yield {"page": page, "want": [int(v) for v in m.group(1).strip("[]").split(",")], "store": m.group(2),
           "items": items, "classes": list(datasets.demo().class_names)}
    page.close()


def test_a_query_in_the_box_opens_its_results_in_the_grid_and_labels_them(find, lab):
    page, store, classes = find["page"], find["store"], find["classes"]
    box = page.locator(f"{FIRST} >> .alw-find-text")
    assert box.is_enabled()
    box.fill(QUERY)
    box.press("Enter")
    wait_for(lambda: root_data(page, "review") == "100", 30, "the results in the review grid")
    review = state(page)["review"]
    assert review["indices"] == find["want"], "the grid shows the engine's ranking, best first"
    assert root_data(page, "find-results") == "100" and root_data(page, "find-shown") == "100"
    assert QUERY in page.inner_text(f"{FIRST} >> .alw-review-title")
    assert QUERY in page.inner_text(f"{FIRST} >> .alw-find-message")
    lab.shots.take(page, "find_search_results")
    cards = page.locator(f"{FIRST} >> .alw-review-card")
    out = int(cards.nth(0).get_attribute("data-index"))
    cards.nth(0).click()  # leave the best hit out
    page.focus(FIRST)
    page.keyboard.press("6")  # the sixth class (Sandal)
    assert f"Label 99 of 100 image(s) as {classes[5]}" in page.inner_text(f"{FIRST} >> .alw-review-summary")
    page.keyboard.press("Enter")
    from alwidget.store import LabelStore

    def labels():
        s = LabelStore.open_readonly(store, find["items"])
        try:
            return {int(i): str(c) for i, c in s.current().items()}
        finally:
            s.close()

    got = wait_for(lambda: labels() if len(labels()) == 99 else None, 30, "99 labels in the store")
    assert got == {i: classes[5] for i in find["want"] if i != out}
    wait_for(lambda: root_data(page, "review") == "", 10, "the grid to close")


def test_a_filter_dims_the_map_and_clear_shows_everything(find, lab):
    page = find["page"]
    page.locator(f"{FIRST} >> .alw-find-clear").click()
    wait_for(lambda: root_data(page, "find-shown") == "", 10, "every point shown")
    assert not page.locator(f"{FIRST} >> select.alw-filter-labelled").is_visible(), "filters start folded away"
    page.locator(f"{FIRST} >> .alw-find-filters").click()
    page.locator(f"{FIRST} >> select.alw-filter-labelled").select_option("unlabelled")
    wait_for(lambda: root_data(page, "find-shown") == str(N - 99), 20, "the labelled images dimmed")
    assert f"{N - 99} of {N} items shown: unlabelled." in page.inner_text(f"{FIRST} >> .alw-find-message")
    labels = np.array(state(page)["labels"])
    assert (labels >= 0).sum() == 99
    assert "left out by the search or filter" in page.inner_text(f"{FIRST} >> .alw-colorkey")
    lab.shots.take(page, "find_filter_unlabelled")
    # more like this from the hovered/selected image searches within the filter
    i = int(np.flatnonzero(labels < 0)[0])
    page.evaluate(f"() => document.querySelectorAll('.alw-root')[0].alw.select([{i}])")
    page.locator(f"{FIRST} >> .alw-find-similar").click()
    wait_for(lambda: root_data(page, "review") == "100", 30, "more like this in the grid")
    rows = state(page)["review"]["indices"]
    assert i not in rows and all(labels[r] < 0 for r in rows), "results stay inside the filter"
    page.locator(f"{FIRST} >> .alw-review-cancel").click()
    page.locator(f"{FIRST} >> .alw-find-clear").click()
    wait_for(lambda: root_data(page, "find-shown") == "", 10, "every point shown again")


def test_without_a_text_tower_the_box_is_disabled_and_says_why(find, lab):
    page = find["page"]
    lab.run_cell(page, 1, timeout_s=300)
    page.wait_for_selector(f'{ROOT}[data-alw-ready="1"] >> nth=1', timeout=120_000)
    box = page.locator(f"{SECOND} >> .alw-find-text")
    assert box.is_disabled()
    why = page.inner_text(f"{SECOND} >> .alw-find-why")
    assert "text_encoder=" in why and "More like this" in why and box.get_attribute("title") == why
    assert page.locator(f"{SECOND} >> .alw-find-similar").is_enabled()
