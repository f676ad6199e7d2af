import numpy as np
import pytest
from helpers import disc_labels, same_partition
from scipy import ndimage as ndi

from cellfuse.instances import Instances
from cellfuse.tiling import owned_instances, predict_tiled, tile_centroid_owner, tile_grid


@pytest.mark.parametrize("shape", [(100, 100), (1000, 700), (1025, 1024), (5, 3000)])
@pytest.mark.parametrize("tile,overlap", [(256, 64), (512, 128), (64, 16)])
def test_cores_partition_the_image(shape, tile, overlap):
    cover = np.zeros(shape, np.int32)
    for t in tile_grid(shape, tile, overlap):
        cover[t.core] += 1
        assert t.read[0].start <= t.core[0].start and t.core[0].stop <= t.read[0].stop
        assert t.read[1].start <= t.core[1].start and t.core[1].stop <= t.read[1].stop
        # the core keeps at least overlap/2 from every cut edge
        for ax in (0, 1):
            r, c = t.read[ax], t.core[ax]
            if r.start > 0:
                assert c.start - r.start >= overlap // 2
            if r.stop < shape[ax]:
                assert r.stop - c.stop >= overlap // 2
    assert (cover == 1).all()


def test_overlap_must_be_smaller_than_tile():
    with pytest.raises(ValueError, match="overlap"):
        tile_grid((1000, 1000), 100, 100)


def _cc_predict(img: np.ndarray) -> Instances:
    """A translation-equivariant local segmenter: connected components of the foreground."""
    lab, n = ndi.label(img[..., 0] > 0)
    return Instances(lab.astype(np.uint32), np.full(n, 0.5))


@pytest.mark.parametrize("tile,overlap", [(256, 48), (300, 64)])
def test_tiled_equals_whole_image_1024(tile, overlap):
    truth = disc_labels((1024, 1024), 600, rmin=4, rmax=11, seed=3)
    img = (truth > 0)[..., None].astype(np.uint8)
    whole = _cc_predict(img)
    tiled = predict_tiled(_cc_predict, lambda w: img[w], img.shape[:2], tile=tile, overlap=overlap)
    assert tiled.n == whole.n
    assert same_partition(tiled.labels, whole.labels)


def test_tiled_into_memmap(tmp_path):
    truth = disc_labels((700, 500), 200, seed=4)
    img = (truth > 0)[..., None].astype(np.uint8)
    out = np.lib.format.open_memmap(
        tmp_path / "out.npy", mode="w+", dtype=np.uint32, shape=(700, 500)
    )
    res = predict_tiled(_cc_predict, lambda w: img[w], (700, 500), tile=200, overlap=40, out=out)
    assert same_partition(np.asarray(res.labels), truth)


def test_cut_cells_are_dropped_and_owner_is_unique():
    shape = (400, 400)
    tiles = tile_grid(shape, 200, 50)
    lab = np.zeros((200, 200), np.uint16)
    lab[190:200, 100:110] = 1  # touches the bottom cut edge of tile 0
    lab[50:60, 50:60] = 2
    keep = owned_instances(Instances(lab, [1, 1]), tiles[0], shape)
    assert keep.tolist() == [False, True]
    pts = np.array([[0, 0], [399, 399], [200, 200], [180, 10]], float)
    owner = tile_centroid_owner(pts, tiles)
    assert (owner >= 0).all()
    for p, o in zip(pts, owner, strict=False):
        cy, cx = tiles[o].core
        assert cy.start <= p[0] < cy.stop and cx.start <= p[1] < cx.stop


def test_image_smaller_than_tile_and_empty():
    img = np.zeros((30, 3000, 1), np.uint8)
    res = predict_tiled(_cc_predict, lambda w: img[w], img.shape[:2], tile=256, overlap=32)
    assert res.n == 0 and res.labels.shape == (30, 3000)
