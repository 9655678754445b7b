"""The explorer: windows computed exactly as kept tiles, what a page draws, and the page
itself in a real headless browser (Chromium through Selenium).

Evidence for the windows: a partition computed directly on the window's polygon (no
cells, no stitching), area conservation, region classes recomputed from the affine
maps, and layer-of-last-cut counted by hand on a model built for it."""
import asyncio
import copy
import os
import queue
import shutil
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

import splinecam
from splinecam.explorer import Windows, draw_data
from splinecam.explorer.view import region_layer
from splinecam.zoo import mlp


def square(r):
    return splinecam.Slice.plane2d([[-r, -r], [r, -r], [r, r], [-r, r]])


@pytest.fixture(scope="module")
def windows():
    return Windows(mlp((2, 24, 24, 1)), square(3.0))


# -- windows ---------------------------------------------------------------------------------
def test_a_window_is_the_direct_partition_of_its_block(windows):
    v = windows.compute((-0.8, 0.4, -0.3, 0.9))
    assert v.level >= 2 and v.computed == len(v.cells) > 1
    direct = splinecam.partition(windows.model, splinecam.Slice(windows.slice.origin, windows.slice.basis, v.polygon),
                                 progress=False, tiles=1)
    P = v.partition
    P.validate()
    assert P.num_regions == direct.num_regions
    assert np.isclose(P.areas().sum(), splinecam.geometry.polygon_area(v.polygon), rtol=1e-12)
    a = np.sort(np.round(P.centroids(), 9), axis=0)
    b = np.sort(np.round(direct.centroids(), 9), axis=0)
    assert np.allclose(a, b, atol=1e-8)
    assert len(P.decision_boundary) == len(direct.decision_boundary)


def test_cells_are_kept_and_reused(windows):
    w = (1.1, 2.0, -2.0, -1.1)
    first = windows.compute(w)
    again = windows.compute(w)
    assert first.computed > 0 and again.computed == 0 and again.reused == first.computed + first.reused
    assert again.partition.num_regions == first.partition.num_regions
    # a zoom out and back in: the finer level's cells are still there
    windows.compute((-3, 3, -3, 3))
    assert windows.compute(w).computed == 0


def test_levels_and_cells_cover_the_window(windows):
    box = (-3, 3, -3, 3)
    assert windows.level_for(box) == 1
    assert windows.level_for((-0.1, 0.1, -0.1, 0.1)) > windows.level_for((-1, 1, -1, 1))
    assert windows.level_for((0, 1e-30, 0, 1e-30)) == windows.max_level
    for w in [(-0.7, 0.2, 0.1, 1.3), (2.5, 3.5, 2.5, 3.5)]:
        z = windows.level_for(w)
        xs, ys = windows.cells_for(w, z)
        block = windows.block_polygon(z, xs, ys)
        lo, hi = block.min(axis=0), block.max(axis=0)
        # the block covers the part of the window inside the slice
        assert lo[0] <= max(w[0], -3) and hi[0] >= min(w[1], 3) and lo[1] <= max(w[2], -3) and hi[1] >= min(w[3], 3)
    with pytest.raises(ValueError, match="does not meet the slice"):
        Windows(mlp((2, 4, 1)), splinecam.Slice.plane2d([[0, 0], [1, 0], [0, 1]])).compute((0.9, 1.0, 0.9, 1.0))


def test_a_cell_over_the_memory_limit_says_so():
    W = Windows(mlp((2, 32, 32, 1)), square(3.0), memory_limit=20_000)
    with pytest.raises(splinecam.MemoryLimitExceeded):
        W.compute((-3, 3, -3, 3))


def test_draw_data_regions_classes_and_density(windows):
    v = windows.compute((-3, 3, -3, 3))
    P = v.partition
    d = draw_data(P, v.window, (400, 400), color="class")
    r = d["regions"]
    assert d["drawn"] == len(r["xs"]) == len(r["fill"]) == len(r["pattern"]) and d["drawn"] + d["hidden"] == \
        P.num_regions
    # the class of each drawn region is the model's decision at a point inside it
    with torch.no_grad():
        out = copy.deepcopy(windows.model).double()(torch.from_numpy(P.centroids()[r["id"]]))
    assert np.array_equal(np.asarray(r["cls"]), (out[:, 0] > 0).long().numpy())
    widths = [24, 24]
    for s in r["pattern"][:20]:
        parts = s.split()
        assert [int(p.split("/")[1]) for p in parts] == widths
    # few pixels: most regions are below two pixels and go to the density image
    tiny = draw_data(P, v.window, (20, 20))
    assert tiny["hidden"] > d["hidden"] and tiny["density"] is not None
    assert np.nansum(tiny["density"]["image"][0]) == tiny["hidden"]
    # a cap on polygons keeps the largest
    capped = draw_data(P, v.window, (400, 400), max_polygons=10)
    assert capped["drawn"] == 10
    assert min(capped["regions"]["area"]) >= np.sort(P.areas())[-10] - 1e-15
    for c in ("slope", "pattern", "layer"):
        assert len(draw_data(P, v.window, color=c)["regions"]["fill"]) == draw_data(P, v.window)["drawn"]
    with pytest.raises(ValueError, match="color must be one of"):
        draw_data(P, v.window, color="nope")


def test_region_layer_by_hand():
    # layer 1: the lines x = 0 and y = 0 (four quadrants); layer 2: one unit x + y - 10,
    # which never changes sign on [-1, 1]^2, and one unit x - 0.5, which cuts the two
    # right quadrants
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
        model[2].bias.copy_(torch.tensor([-10.0, -0.5]))
    P = splinecam.partition(model, square(1.0), progress=False, decision_boundary=False)
    assert P.num_regions == 6
    lay = region_layer(P)
    c = P.centroids()
    assert np.array_equal(lay[c[:, 0] > 0], np.full(int((c[:, 0] > 0).sum()), 2))
    assert np.array_equal(lay[c[:, 0] < 0], np.ones(2, np.int64))


# -- the page --------------------------------------------------------------------------------
bokeh = pytest.importorskip("bokeh")


def test_the_document_has_everything_the_page_shows(windows):
    from bokeh.document import Document

    from splinecam.explorer.app import Explorer, make_document
    doc = Document()
    make_document(doc, Explorer(windows, points={"A": (0, 0)}))
    for name in ("plot", "regions", "boundary", "density", "anchors", "color", "layer", "status", "info",
                 "export_png", "export_svg", "export_npz", "export_geojson", "colorbar"):
        assert doc.get_model_by_name(name) is not None, name
    assert doc.get_model_by_name("layer").end == 2


def _chromium():
    for b, d in (("/usr/bin/chromium", "/usr/bin/chromedriver"),):
        if os.path.exists(b) and os.path.exists(d):
            return b, d
    b, d = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    return (b, d) if b and d else None


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium")
    found = _chromium()
    if found is None:
        pytest.skip("needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = found[0]
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,960"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(found[1]), options=opts)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def server():
    from splinecam.demo import train_mlp, two_moons
    from splinecam.explorer.server import start_server
    X, y = two_moons(256, noise=0.2)
    model = train_mlp(X, y, widths=(32, 32, 32), steps=300)
    q = queue.Queue()

    def run():
        asyncio.set_event_loop(asyncio.new_event_loop())
        srv, url = start_server(model, square(3.0), port=0, points={"A": X[0], "B": X[-1]})
        q.put((srv, url))
        srv.io_loop.start()

    threading.Thread(target=run, daemon=True).start()
    srv, url = q.get(timeout=120)
    yield srv, url
    srv.io_loop.add_callback(srv.stop)
    srv.io_loop.add_callback(srv.io_loop.stop)


_STATE = """
const doc = (window.Bokeh && Bokeh.documents.length) ? Bokeh.documents[0] : null;
if (!doc) return null;
const src = doc.get_model_by_name('regions_source');
return {regions: src.data.xs.length, boundary: doc.get_model_by_name('boundary_source').data.xs.length,
        status: doc.get_model_by_name('status').text, busy: doc.get_model_by_name('busy').text,
        fill: src.data.fill.slice(0, 50).join(',')};
"""

# Bokeh draws its widgets and tooltips inside shadow roots: search them all.
_TOOLTIP = """
function walk(root, out) {
  for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) walk(el.shadowRoot, out);
    const c = (el.className && el.className.baseVal === undefined) ? String(el.className) : '';
    if (c.includes('tooltip') && el.innerText && el.innerText.trim()) out.push(el.innerText);
  }
  return out;
}
return walk(document, []).join('\\n---\\n');
"""


def _wait(driver, cond, timeout=60.0, what="the page"):
    t = time.time()
    last = None
    while time.time() - t < timeout:
        try:
            last = driver.execute_script(_STATE)
        except Exception:  # the page is still loading
            last = None
        if last is not None and cond(last):
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s; last state {last}")


def _artifacts(tmp_path_factory):
    out = os.environ.get("SPLINECAM_ARTIFACTS")
    path = out if out else str(tmp_path_factory.mktemp("explorer"))
    os.makedirs(path, exist_ok=True)
    return path


def test_page_loads_zooms_and_hovers(browser, server, tmp_path_factory):
    srv, url = server
    out = _artifacts(tmp_path_factory)
    browser.get(url)
    first = _wait(browser, lambda s: s["regions"] > 0 and s["busy"] == "", what="the first window")
    assert first["boundary"] > 0, "no decision boundary drawn"
    time.sleep(0.5)
    browser.save_screenshot(os.path.join(out, "explorer_before.png"))
    # a scripted zoom into the decision boundary near A
    browser.execute_script("""
        const p = Bokeh.documents[0].get_model_by_name('plot');
        p.x_range.setv({start: -0.4, end: 0.4}); p.y_range.setv({start: -0.4, end: 0.4});""")
    after = _wait(browser, lambda s: s["regions"] != first["regions"] and s["busy"] == "" and
                  s["status"] != first["status"], what="the zoomed window")
    assert "level" in after["status"] and "level 0" not in after["status"]
    time.sleep(0.5)
    browser.save_screenshot(os.path.join(out, "explorer_after.png"))
    # hover the middle of the plot: the tooltip names the region's class
    from selenium.webdriver.common.action_chains import ActionChains
    canvas = browser.execute_script("""
        function find(root) { for (const el of root.querySelectorAll('*')) {
            if (el.tagName === 'CANVAS' && el.width > 300) return el;
            if (el.shadowRoot) { const c = find(el.shadowRoot); if (c) return c; } } return null; }
        return find(document);""")
    assert canvas is not None
    text = ""
    for dx, dy in ((0, 0), (40, 30), (-50, 20), (25, -45)):
        ActionChains(browser).move_to_element_with_offset(canvas, dx, dy).perform()
        t = time.time()
        while time.time() - t < 3 and "class" not in text:
            text = browser.execute_script(_TOOLTIP) or ""
            time.sleep(0.1)
        if "class" in text:
            break
    browser.save_screenshot(os.path.join(out, "explorer_hover.png"))
    assert "class" in text and "region" in text, f"no tooltip with the region's class: {text!r}"


def _info(browser):
    return browser.execute_script("return Bokeh.documents[0].get_model_by_name('info').text;")


def test_click_layer_slider_and_export(browser, server, tmp_path):
    srv, url = server
    srv.explorer.export_dir = str(tmp_path)
    browser.get(url)
    first = _wait(browser, lambda s: s["regions"] > 0 and s["busy"] == "", what="the first window")
    # a click selects a region: its affine map and neighbours appear
    browser.execute_script("Bokeh.documents[0].get_model_by_name('regions_source').selected.indices = [3];")
    t = time.time()
    while time.time() - t < 20 and "neighbours" not in _info(browser):
        time.sleep(0.2)
    info = _info(browser)
    assert "y<sub>0</sub>(u, v) =" in info and "neighbours" in info, info
    # the partition after layer 1: fewer regions, no decision boundary
    browser.execute_script("Bokeh.documents[0].get_model_by_name('layer').value = 1;")
    one = _wait(browser, lambda s: s["regions"] < first["regions"] and s["boundary"] == 0, timeout=20,
                what="the partition after layer 1")
    assert one["regions"] > 0
    # the export buttons write the view's partition
    clicked = browser.execute_script("""
        function find(root) { for (const el of root.querySelectorAll('button')) {
            if (el.innerText.trim() === 'export npz') return el; }
          for (const el of root.querySelectorAll('*')) if (el.shadowRoot) { const b = find(el.shadowRoot);
            if (b) return b; } return null; }
        const b = find(document); if (b) b.click(); return b !== null;""")
    assert clicked
    done = _wait(browser, lambda s: s["status"].startswith("wrote "), timeout=30, what="the export")
    path = done["status"][len("wrote "):]
    assert os.path.dirname(path) == str(tmp_path) and path.endswith(".npz")
    assert [f for f in os.listdir(tmp_path)] == [os.path.basename(path)]  # no partial file left
    from splinecam.analysis.export import load_npz
    saved = load_npz(path)
    assert int(saved["num_layers"]) == 1  # what is on screen: the partition after layer 1
    assert len(saved["face_offsets"]) - 1 >= one["regions"]


def test_page_answers_while_a_window_is_computed(browser, server):
    srv, url = server
    windows = srv.explorer.windows
    browser.get(url)
    _wait(browser, lambda s: s["regions"] > 0 and s["busy"] == "", what="the first window")
    run = windows.run

    def slow(poly, **kw):  # the cells of the next window take a while
        time.sleep(1.5)
        return run(poly, **kw)
    windows.run = slow
    try:
        before = browser.execute_script(_STATE)
        browser.execute_script("""
            const p = Bokeh.documents[0].get_model_by_name('plot');
            p.x_range.setv({start: 1.1, end: 1.5}); p.y_range.setv({start: 1.1, end: 1.5});""")
        _wait(browser, lambda s: s["busy"].startswith("computing"), what="the computation's start")
        browser.execute_script("Bokeh.documents[0].get_model_by_name('color').value = 'class';")
        # recoloured from the last window while the new one is still being computed
        s = _wait(browser, lambda s: s["fill"] != before["fill"], timeout=20, what="the recolouring")
        assert s["busy"].startswith("computing"), f"the recolouring waited for the window: {s['busy']!r}"
        done = _wait(browser, lambda s: s["busy"] == "" and s["status"] != before["status"], timeout=90,
                     what="the new window")
        assert "computed" in done["status"]
    finally:
        windows.run = run


def test_the_same_page_in_a_jupyter_cell():
    """A notebook cell that calls splinecam.explore shows the page: the kernel serves the
    app (Bokeh's notebook server) and the cell's output loads it from there."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import re
    import urllib.request
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import splinecam\nfrom splinecam.zoo import mlp\n"
        "sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])\n"
        "splinecam.explore(mlp((2, 8, 1)), sl, notebook_url='localhost:8888')")]
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=180)
    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        outputs = nb.cells[0].outputs
        assert not [o for o in outputs if o.get("output_type") == "error"], outputs
        urls = re.findall(r"http://localhost:\d+/autoload\.js\?[^\"' ]*", str(outputs))
        assert urls, outputs
        url = urls[0].replace("&amp;", "&")
        assert "Bokeh" in urllib.request.urlopen(url, timeout=60).read().decode()
        # the kernel serves the explorer: a session of its app has the page's models
        from bokeh.client import pull_session
        base = url.split("/autoload.js")[0] + "/"
        with pull_session(url=base) as session:
            doc = session.document
            for name in ("regions_source", "boundary_source", "color", "layer", "status"):
                assert doc.get_model_by_name(name) is not None, name
