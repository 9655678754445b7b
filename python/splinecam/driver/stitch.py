"""Stitch the partitions of the tiles of a slice into one :class:`Partition`.

The tiles are convex pieces of the slice cut along axis-parallel *seam lines*
(:func:`splinecam.driver.tiles.tile_polygons`). Each tile's partition is exact on its
own; together they are the partition of the slice cut along the seams as well. Stitching
removes those cuts, level by level (after each hidden layer, then the decision-boundary
refinement), so that the result is the planar graph of the whole slice:

1. **One vertex per point of a seam.** A vertex a tile creates on a seam lies exactly on
   the seam line (it interpolates two points of that line), so its position along the
   line is one number. The two sides of a seam compute the same crossings from the same
   values at the same points, with one snapping tolerance for the whole slice
   (:mod:`splinecam.driver.tolerance`); their positions agree up to the rounding of the
   interpolation. Vertices at the same position are one vertex; the remaining ones of
   the two sides are paired in order along the line when they are within a few ulps of
   the slice's diameter. A vertex one side has and the other has not (a corner of a tile
   that was split when its neighbour was not: a T-junction) is inserted into the other
   side's boundary edge, so that every seam edge has a twin.
2. **Seam edges between pieces of one region are dissolved.** The pieces of one linear
   region on the two sides of a seam have one activation pattern, and only they do (a
   region is convex). Patterns come from forward passes at the centroids of the pieces
   that touch a seam (with the tolerance policy's floors). The faces across a dissolved
   edge are merged (``_core.merge``); a seam edge between different patterns lies on a
   unit's zero set and gets the label of the first unit that differs.
3. **Vertices the seams alone made are removed**: a vertex of a tile's boundary (not a
   corner of the slice) that is left with two edges, which are collinear pieces of one
   edge of the slice's partition.
"""
from __future__ import annotations

import mmap
from typing import List, Sequence

import numpy as np

from splinecam import _core
from splinecam.geometry import face_ids, next_index
from splinecam.result.partition import Layer, Partition, _Inputs

__all__ = ["stitch"]

#: Two seam vertices of the two sides closer than this fraction of the slice's diameter
#: along the seam are one vertex (positions agree to the rounding of an interpolation).
SEAM_RTOL = 1e-12


def _release(*arrays) -> None:
    """Drop the resident pages of memory-mapped arrays once they are read (tiles opened
    from a store): they stay in the page cache, but not in this process's memory, so
    stitching a store of many tiles does not hold every tile's pages at once."""
    for a in arrays:
        mm = getattr(a, "_mmap", None)
        if isinstance(a, np.memmap) and mm is not None:
            try:
                mm.madvise(mmap.MADV_DONTNEED)
            except (AttributeError, OSError, ValueError):  # pragma: no cover - not Linux
                pass


class _Tile:
    """One tile's partition, seen through global vertex ids."""

    def __init__(self, P: Partition, polygon: np.ndarray, first_id: int):
        self.P = P
        self.polygon = polygon
        self.first_id = first_id
        self.nv = len(P._xy)
        # the levels: hidden layers 1..L, then the decision refinement (if any)
        self.levels = [(f.face_offsets, f.face_verts, f.he_layer, f.he_unit) for f in P._layers]
        if P._decision is not None:
            self.levels.append(tuple(P._decision["faces"]))
        # level at which each vertex appears: 0 for the tile's corners
        born = np.full(self.nv, len(self.levels), np.int64)
        born[:len(polygon)] = 0
        lo = len(polygon)
        for i, f in enumerate(P._layers):
            born[lo:f.num_vertices] = i + 1
            lo = max(lo, f.num_vertices)
        self.born = born


def _seam_lines(tiles: Sequence[_Tile], domain: np.ndarray, diameter: float):
    """The seam lines: ``(axis, value)`` of every axis-parallel tile edge whose midpoint
    lies inside the slice (not on its boundary)."""
    d = np.roll(domain, -1, axis=0) - domain
    normal_len = np.linalg.norm(d, axis=1)
    lines = set()
    for t in tiles:
        p = t.polygon
        q = np.roll(p, -1, axis=0)
        mid = 0.5 * (p + q)
        side = (d[None, :, 0] * (mid[:, None, 1] - domain[None, :, 1])
                - d[None, :, 1] * (mid[:, None, 0] - domain[None, :, 0])) / normal_len
        inside = side.min(axis=1) > 1e-9 * diameter
        for axis in (0, 1):
            on = (p[:, axis] == q[:, axis]) & (p[:, 1 - axis] != q[:, 1 - axis]) & inside
            lines.update((axis, float(c)) for c in p[on, axis])
    return sorted(lines)


def _boundary_on_lines(xy, level, lines):
    """Half-edges of a level's cycles on the domain boundary that lie on a seam line:
    ``(h, a, b, line index)``."""
    off, verts, lay, _ = level
    nxt = verts[next_index(off)]
    h = np.flatnonzero(lay == -1)
    a, b = verts[h], nxt[h]
    line = np.full(len(h), -1, np.int64)
    for i, (axis, c) in enumerate(lines):
        on = (xy[a, axis] == c) & (xy[b, axis] == c)
        line[on] = i
    keep = line >= 0
    return h[keep], a[keep], b[keep], line[keep]


def _unify(tiles, n, lines, diameter):
    """Global vertex ids (``n`` of them, tile by tile): the union of the vertices every
    tile puts on a seam line at the same point. Returns ``(rep, on_seam)``: the
    representative of every global id and a mask of the ids that lie on a tile's boundary
    at a seam."""
    pairs = []
    on_seam = np.zeros(n, bool)
    entries = [[] for _ in lines]  # per line: (pos, gid, side)
    for t in tiles:
        deepest = t.levels[-1]
        h, a, b, line = _boundary_on_lines(t.P._xy, deepest, lines)
        for i in np.unique(line):
            axis, c = lines[i]
            side = int(t.polygon[:, axis].mean() > c)
            v = np.unique(np.concatenate([a[line == i], b[line == i]]))
            g = v + t.first_id
            on_seam[g] = True
            entries[i].append(np.stack([t.P._xy[v, 1 - axis], g, np.full(len(g), side)], axis=1))
    tol = SEAM_RTOL * diameter
    for i, e in enumerate(entries):
        if not e:
            continue
        e = np.concatenate(e)
        e = e[np.lexsort((e[:, 1], e[:, 0]))]
        pos, gid, side = e[:, 0], e[:, 1].astype(np.int64), e[:, 2].astype(np.int64)
        same = np.flatnonzero(pos[1:] == pos[:-1])  # one point: one vertex
        pairs.append(np.stack([gid[same], gid[same + 1]], axis=1))
        # Distinct positions seen by one side only: pair them in order with the other
        # side's, within the rounding of an interpolation.
        starts = np.concatenate([[0], np.flatnonzero(pos[1:] != pos[:-1]) + 1])
        sides = np.add.reduceat(1 << side, starts)  # bit 0: side 0 present, bit 1: side 1
        lone = starts[sides != 3]
        if len(lone) < 2:
            continue
        ls, lp, lg = sides[sides != 3], pos[lone], gid[lone]
        j = 0
        while j < len(lone) - 1:
            if ls[j] != ls[j + 1] and lp[j + 1] - lp[j] <= tol:
                pairs.append(np.array([[lg[j], lg[j + 1]]]))
                j += 2
            else:
                j += 1
    if pairs:
        pr = np.concatenate(pairs)
        from scipy.sparse import coo_matrix  # imported here: a one-pass partition never needs scipy
        from scipy.sparse.csgraph import connected_components
        m = coo_matrix((np.ones(len(pr)), (pr[:, 0], pr[:, 1])), shape=(n, n))
        _, comp = connected_components(m, directed=False)
        # representative: the smallest id of each component
        first = np.full(comp.max() + 1, n, np.int64)
        np.minimum.at(first, comp, np.arange(n))
        rep = first[comp]
    else:
        rep = np.arange(n)
    return rep, on_seam


def _insert_missing(level, xy, lines, present):
    """Insert into the seam half-edges of a level's cycles (global ids) the seam vertices
    of the other side that lie strictly inside them (T-junctions). ``present``: per line,
    the sorted positions and ids of the seam vertices of this level."""
    off, verts, lay, unit = level
    h, a, b, line = _boundary_on_lines(xy, level, lines)
    ins_at, ins_v = [], []
    for i in np.unique(line):
        pos, ids = present[i]
        if len(pos) == 0:
            continue
        axis = lines[i][0]
        sel = line == i
        pa, pb = xy[a[sel], 1 - axis], xy[b[sel], 1 - axis]
        lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
        s = np.searchsorted(pos, lo, side="right")
        e = np.searchsorted(pos, hi, side="left")
        for k in np.flatnonzero(e > s):
            mid = np.arange(s[k], e[k])
            if pa[k] > pb[k]:
                mid = mid[::-1]  # in the half-edge's direction
            ins_at.append(np.full(len(mid), h[sel][k] + 1))
            ins_v.append(ids[mid])
    if not ins_at:
        return level
    at, v = np.concatenate(ins_at), np.concatenate(ins_v)
    face = np.searchsorted(off, at - 1, side="right") - 1  # face of the half-edge h = at - 1
    new_verts = np.insert(verts, at, v)
    new_lay = np.insert(lay, at, lay[at - 1])
    new_unit = np.insert(unit, at, unit[at - 1])
    shift = np.bincount(face + 1, minlength=len(off)).cumsum()
    return off + shift, new_verts.astype(np.int32), new_lay.astype(np.int32), new_unit.astype(np.int32)


def _unit_labels(net, num_layers):
    """For every pattern column of the first ``num_layers`` layers: its layer (1-based)
    and unit (window of a max-type layer)."""
    layers, units = [], []
    for l in range(1, num_layers + 1):
        nl = net.layers[l - 1]
        if nl.kind == "elementwise":
            n = len(nl.breakpoints) * nl.width
            u = np.arange(n) % nl.width
        else:
            W, k = nl.idx.shape
            u = np.arange(W * k) // k
        layers.append(np.full(len(u), l, np.int32))
        units.append(u.astype(np.int32))
    return np.concatenate(layers), np.concatenate(units)


def _splice(level, xy, candidates, keep):
    """Remove from the cycles the ``candidates`` vertices left with two edges (collinear
    pieces of one edge), except those in ``keep``."""
    off, verts, lay, unit = level
    nxt = verts[next_index(off)]
    lo, hi = np.minimum(verts, nxt), np.maximum(verts, nxt)
    key = np.unique(lo.astype(np.int64) * len(xy) + hi)
    deg = np.bincount(np.concatenate([key // len(xy), key % len(xy)]), minlength=len(xy))
    drop = candidates & (deg == 2) & ~keep
    gone = drop[verts]
    if not gone.any():
        return level
    # the half-edge into a removed vertex now ends at the next kept one: labels of the
    # first piece (both pieces lie on one line and carry its label)
    face = face_ids(off)
    new_off = np.concatenate([[0], np.cumsum(np.bincount(face[~gone], minlength=len(off) - 1))])
    return new_off.astype(np.int64), verts[~gone], lay[~gone], unit[~gone]


def stitch(net, slice, polygons: Sequence[np.ndarray], parts: Sequence[Partition], stats: dict,
           sink=None) -> Partition:
    """One :class:`Partition` of ``slice`` from the partitions ``parts`` of its tiles
    ``polygons`` (see the module doc). ``sink``: a :class:`splinecam.result.store.Writer`
    that takes the result as it is made (the result is then the store, memory-mapped).

    Memory: the seams change only the faces that hold a vertex on a seam, a small part of
    each level. Those are stitched together, in memory; every other face is copied from
    its tile to the result as it is (its vertex ids renumbered), tile after tile, in the
    result's order. So besides per-vertex and per-face indices, no more than one tile's
    level and the faces along the seams are in memory at once, and with a ``sink`` no
    level of the result is ever whole in memory."""
    poly = slice.polygon
    bbox_lo, bbox_hi = poly.min(axis=0), poly.max(axis=0)
    diameter = float(np.linalg.norm(bbox_hi - bbox_lo))
    tiles, first = [], 0
    for P, p in zip(parts, polygons):
        tiles.append(_Tile(P, np.asarray(p, np.float64), first))
        first += tiles[-1].nv
    n_levels = len(tiles[0].levels)
    L = parts[0].num_layers
    has_decision = parts[0]._decision is not None
    lines = _seam_lines(tiles, poly, diameter)
    rep, on_seam = _unify(tiles, first, lines, diameter)
    born = np.full(first, n_levels + 1, np.int16)
    for t in tiles:
        np.minimum.at(born, rep[t.first_id:t.first_id + t.nv], t.born.astype(np.int16))
    # New ids: representatives ordered by the level they appear at (each level's vertices
    # are a prefix of the ids, as in an untiled partition).
    reps = np.flatnonzero(rep == np.arange(len(rep)))
    order = reps[np.argsort(born[reps], kind="stable")]
    del reps
    born_new = born[order]
    new_id = np.full(first, -1, np.int64)
    new_id[order] = np.arange(len(order))
    gid = new_id[rep].astype(np.int32)
    del new_id, rep, born
    seam = np.zeros(len(order), bool)
    seam[gid[on_seam]] = True
    del on_seam
    if sink is not None:
        sink.slice(slice)
    new = (lambda name, dtype, shape: sink.column(name, dtype, shape)) if sink is not None else _MemColumn
    xy_out = _gather(tiles, order, lambda t: t.P._xy, new("xy", np.float64, (len(order), 2)))
    xy = np.array(xy_out) if sink is not None else xy_out  # the stitch reads it at random: in memory
    outputs = None
    if parts[0]._outputs is not None:
        C = parts[0]._outputs.shape[1]
        outputs = _gather(tiles, order, lambda t: t.P._outputs, new("outputs", np.float64, (len(order), C)))
    del order
    corners = np.zeros(len(xy), bool)  # the slice's own corners stay, whatever their degree
    for c in poly:
        corners |= (xy[:, 0] == c[0]) & (xy[:, 1] == c[1])
    seam_ids = np.flatnonzero(seam)
    seam_xy, seam_born = xy[seam_ids], born_new[seam_ids]

    # Patterns of the final pieces that touch a seam (per tile), for the keys of every level.
    pat_cols_end = np.cumsum([0] + [_bits(net.layers[l]) for l in range(L)])
    col_layer, col_unit = _unit_labels(net, L)
    piece_pat = []  # per tile: dict final piece -> row in pats
    pats = []
    base = 0
    for t in tiles:
        f = t.P._faces
        h, a, b, line = _boundary_on_lines(t.P._xy, (f.face_offsets, f.face_verts, f.he_layer, f.he_unit), lines)
        face = np.searchsorted(f.face_offsets, h, side="right") - 1
        touch = np.unique(face)
        if has_decision:  # the decision faces on seams belong to these regions too
            d = t.P._decision
            hd, _, _, _ = _boundary_on_lines(t.P._xy, tuple(d["faces"]), lines)
            dface = np.searchsorted(d["faces"][0], hd, side="right") - 1
            touch = np.union1d(touch, d["parent"][dface])
        row = np.full(t.P.num_regions, -1, np.int64)
        row[touch] = base + np.arange(len(touch))
        base += len(touch)
        piece_pat.append(row)
        if len(touch):
            pats.append(net.patterns(_Inputs(slice, t.P.centroids()[touch]), L, packed=True))
    pats = np.concatenate(pats) if pats else np.zeros((0, (int(pat_cols_end[-1]) + 7) // 8), np.uint8)
    labels = (pats, pat_cols_end, col_layer, col_unit)

    layers: List[Layer] = []
    prev_group = prev_start = None  # stitched face of each face of the previous level, per tile from prev_start
    decision = None
    for lev in range(n_levels):
        is_dec = has_decision and lev == n_levels - 1
        nv_level = int(np.count_nonzero(born_new <= lev + 1))
        # present seam vertices per line at this level (global ids)
        present = []
        for i, (axis, c) in enumerate(lines):
            on = (seam_born <= lev + 1) & (seam_xy[:, axis] == c)
            ids = seam_ids[on]
            pos = seam_xy[on, 1 - axis]
            o = np.argsort(pos, kind="stable")
            present.append((pos[o], ids[o]))
        sub = _seam_faces(tiles, lev, is_dec, gid, seam, piece_pat)
        s_group, s_level, gfirst = _stitch_seam_faces(sub, xy, lines, present, seam, corners, labels, L, lev, is_dec)
        # The stitched face of every face of this level: the faces off the seams are their
        # own, numbered with the seam groups by their first face.
        F = int(sub["face_base"][-1])
        is_first = np.ones(F, bool)
        is_first[sub["face"]] = False
        is_first[gfirst] = True
        group = np.cumsum(is_first) - 1
        n_out = int(group[-1]) + 1 if F else 0
        group[sub["face"]] = group[gfirst[s_group]]
        del is_first
        directory = None if sink is None else (sink.decision_dir() if is_dec else sink.layer_dir())
        extras = {"winner": np.int32, "parent": np.int64} if is_dec else {"face_parent": np.int32}
        out = _LevelOut(directory, n_out, sub["kept_halfedges"] + len(s_level[1]), extras)
        s_off = s_level[0]
        k = 0  # the next seam group to write
        for ti, t in enumerate(tiles):
            off, verts, lay, unit = t.levels[lev]
            lo, hi = int(sub["face_base"][ti]), int(sub["face_base"][ti + 1])
            kept = np.flatnonzero(~sub["mask"][ti])
            k1 = int(np.searchsorted(gfirst, hi))
            firstf = np.concatenate([kept + lo, gfirst[k:k1]])
            o = np.argsort(firstf, kind="stable")
            firstf = firstf[o]
            # cycles: the kept faces from the tile, the seam groups from the seams' stitch
            b0, b1 = int(s_off[k]), int(s_off[k1])
            src_len = np.concatenate([np.diff(off)[kept], np.diff(s_off[k:k1 + 1])])[o]
            src_start = np.concatenate([off[:-1][kept], len(verts) + s_off[k:k1] - b0])[o]
            new_off = np.concatenate([[0], np.cumsum(src_len)])
            take = np.repeat(src_start - new_off[:-1], src_len) + np.arange(int(new_off[-1]))
            g = gid[verts.astype(np.int64) + t.first_id]
            cycles = [np.concatenate([a, b[b0:b1].astype(np.int32)])[take]
                      for a, b in ((g, s_level[1]), (lay, s_level[2]), (unit, s_level[3]))]
            del g
            # The parent of a stitched face: the stitched face of the previous level that
            # holds the parent of its first piece.
            local = firstf - lo
            if lev == 0:
                parent = np.zeros(len(local), np.int64)
            else:
                loc_parent = (t.P._decision["parent"] if is_dec else t.P._layers[lev].face_parent)[local]
                parent = prev_group[prev_start[ti] + loc_parent.astype(np.int64)]
            if is_dec:
                out.append(src_len, *cycles, winner=t.P._decision["winner"][local], parent=parent)
                _release(t.P._decision["parent"], t.P._decision["winner"])
            else:
                out.append(src_len, *cycles, face_parent=parent)
                _release(t.P._layers[lev].face_parent)
            _release(*t.levels[lev])
            k = k1
        arrays = out.close()
        faces = tuple(arrays[n] for n in ("face_offsets", "face_verts", "he_layer", "he_unit"))
        if is_dec:
            decision = {"faces": faces, "winner": arrays["winner"], "layer": L + 1, "parent": arrays["parent"]}
            if sink is not None:
                decision = sink.decision_written(L + 1)
        else:
            layers.append(Layer(*faces, arrays["face_parent"], nv_level) if sink is None
                          else sink.layer_written(nv_level))
        prev_group, prev_start = group, sub["face_base"]
        del sub, s_group, s_level, gfirst, group, arrays, faces
    return Partition(xy=xy_out, layers=layers, outputs=outputs, decision=decision, net=net, slice=slice, stats=stats)


def _seam_faces(tiles, lev, is_dec, gid, seam, piece_pat) -> dict:
    """The faces of level ``lev`` that hold a vertex on a seam, from every tile, in order:
    the only faces the seams change (a face off the seams keeps its cycle, its vertex ids
    renumbered). Returns their cycles in global vertex ids (``level``), their global
    face indices (``face``), their pattern rows (``key``) and winners (decision level),
    per tile the mask of them (``mask``), the first global face of every tile
    (``face_base``), and how many half-edges the other faces hold (``kept_halfedges``)."""
    lens, vs, ls, us, face, key, win, masks = [], [], [], [], [], [], [], []
    base = np.zeros(len(tiles) + 1, np.int64)
    kept_he = 0
    for ti, t in enumerate(tiles):
        off, verts, lay, unit = t.levels[lev]
        nf = len(off) - 1
        g = gid[verts.astype(np.int64) + t.first_id]
        m = np.logical_or.reduceat(seam[g], off[:-1]) if nf else np.zeros(0, bool)
        sel = np.repeat(m, np.diff(off))
        lens.append(np.diff(off)[m])
        vs.append(g[sel]); ls.append(np.asarray(lay)[sel]); us.append(np.asarray(unit)[sel])
        face.append(base[ti] + np.flatnonzero(m))
        # the final piece whose pattern stands for each face of this level
        fin = t.P._decision["parent"] if is_dec else _any_descendant(t.P, lev + 1, piece_pat[ti] >= 0)
        key.append(piece_pat[ti][np.asarray(fin)[m]])
        if is_dec:
            win.append(np.asarray(t.P._decision["winner"])[m])
        masks.append(m)
        kept_he += len(verts) - int(np.count_nonzero(sel))
        base[ti + 1] = base[ti] + nf
        del g, sel
    lens = np.concatenate(lens)
    level = (np.concatenate([[0], np.cumsum(lens)]).astype(np.int64), np.concatenate(vs).astype(np.int32),
             np.concatenate(ls).astype(np.int32), np.concatenate(us).astype(np.int32))
    return dict(level=level, face=np.concatenate(face), key=np.concatenate(key),
                winner=np.concatenate(win) if is_dec else None, mask=masks, face_base=base, kept_halfedges=kept_he)


def _stitch_seam_faces(sub, xy, lines, present, seam, corners, labels, L, lev, is_dec):
    """Stitch the faces along the seams (:func:`_seam_faces`): T-junctions inserted, seam
    edges between pieces of one region dissolved (their faces merged), the others
    labelled, vertices the seams alone made removed. Returns ``(group, level, first)``:
    the stitched face of every seam face, the stitched faces' cycles, and the global
    index of each one's first face (increasing)."""
    pats, pat_cols_end, col_layer, col_unit = labels
    keyrow, winner = sub["key"], sub["winner"]
    off, verts, lay, unit = _insert_missing(sub["level"], xy, lines, present)
    h, th, fa, fb = _seam_twins(off, verts, lay, len(xy))  # one half of each seam edge, its twin
    remove = np.zeros(len(verts), np.uint8)
    if len(h):
        ra, rb = keyrow[fa], keyrow[fb]
        ncols = int(pat_cols_end[L if is_dec else lev + 1])
        if (ra < 0).any() or (rb < 0).any():
            raise RuntimeError("splinecam: a piece on a seam has no pattern (tiles do not meet)")
        differs = _prefix_differs(pats[ra], pats[rb], ncols)
        same = ~differs
        if is_dec:
            wa, wb = winner[fa], winner[fb]
            dec_edge = same & (wa != wb)
            lay[h[dec_edge]] = lay[th[dec_edge]] = L + 1
            unit[h[dec_edge]] = unit[th[dec_edge]] = np.maximum(wa, wb)[dec_edge]
            same &= wa == wb
        kept = np.flatnonzero(~same & differs)
        if len(kept):  # the first unit that differs names the edge
            col = np.argmax(np.unpackbits(pats[ra[kept]] ^ pats[rb[kept]], axis=1)[:, :ncols], axis=1)
            for arr, val in ((lay, col_layer[col]), (unit, col_unit[col])):
                arr[h[kept]] = val
                arr[th[kept]] = val
        remove[h[same]] = 1
        remove[th[same]] = 1
    if remove.any():
        m = _merge_touched(len(xy), off, verts, lay, unit, remove)
        group = m["group"].astype(np.int64)
        off, verts, lay, unit = m["face_offsets"], m["face_verts"], m["he_layer"], m["he_unit"]
    else:
        group = np.arange(len(off) - 1)
    ng = int(group.max()) + 1 if len(group) else 0
    firstf = np.full(ng, -1, np.int64)
    firstf[group[::-1]] = np.arange(len(group))[::-1]
    level = _splice((off, verts, lay, unit), xy, seam, corners)
    return group, level, sub["face"][firstf]


class _MemColumn:
    """:class:`splinecam.result.store.NpyColumn` in memory: an array of known shape
    filled front to back."""

    def __init__(self, name, dtype, shape):
        self.a = np.empty(shape, dtype)
        self.at = 0

    def write(self, a) -> None:
        self.a[self.at:self.at + len(a)] = a
        self.at += len(a)

    def close(self) -> np.ndarray:
        assert self.at == len(self.a), (self.at, self.a.shape)
        return self.a


class _LevelOut:
    """The stitched faces of one level, appended in their final order (tile by tile):
    into memory, or (``directory``) straight into a store's files."""

    def __init__(self, directory, num_faces: int, num_halfedges: int, extras: dict):
        from splinecam.result.store import NpyColumn

        def column(name, dtype, shape):
            if directory is None:
                return _MemColumn(name, dtype, shape)
            return NpyColumn(f"{directory}/{name}.npy", dtype, shape)

        self.cols = {"face_offsets": column("face_offsets", np.int64, (num_faces + 1,))}
        for name in ("face_verts", "he_layer", "he_unit"):
            self.cols[name] = column(name, np.int32, (num_halfedges,))
        for name, dtype in extras.items():
            self.cols[name] = column(name, dtype, (num_faces,))
        self.cols["face_offsets"].write(np.zeros(1, np.int64))
        self.base = 0

    def append(self, lens, verts, lay, unit, **extras) -> None:
        """The next faces: their cycles' lengths and half-edges, and per face ``extras``."""
        self.cols["face_offsets"].write(self.base + np.cumsum(lens))
        self.base += int(np.sum(lens))
        for name, a in (("face_verts", verts), ("he_layer", lay), ("he_unit", unit), *extras.items()):
            self.cols[name].write(a)

    def close(self) -> dict:
        return {k: c.close() for k, c in self.cols.items()}


def _gather(tiles, order, get, column, chunk: int = 1 << 20):
    """Rows ``order`` (global vertex ids) of the tiles' arrays ``get(tile)``, written to
    ``column`` in that order a chunk at a time (the tiles' arrays are never joined);
    returns ``column.close()``."""
    firsts = np.array([t.first_id for t in tiles], np.int64)
    for s in range(0, len(order), chunk):
        ids = order[s:s + chunk]
        ti = np.searchsorted(firsts, ids, side="right") - 1
        rows = None
        for i in np.unique(ti):
            m = ti == i
            part = get(tiles[i])[ids[m] - firsts[i]]
            if rows is None:
                rows = np.empty((len(ids),) + part.shape[1:], part.dtype)
            rows[m] = part
        column.write(rows)
        _release(*(get(t) for t in tiles))
    return column.close()


def _merge_touched(num_vertices, off, verts, lay, unit, remove):
    """``_core.merge`` of a level, run on the faces that touch a removed half-edge only
    (the others are copied as they are): the same result, without a half-edge table of
    the whole level. Groups are numbered by their first face, as ``_core.merge`` does, and
    an untouched face is its own group with its cycle unchanged."""
    F = len(off) - 1
    lens = np.diff(off)
    touched = np.zeros(F, bool)
    touched[np.searchsorted(off, np.flatnonzero(remove), side="right") - 1] = True
    sel = np.repeat(touched, lens)
    sub_off = np.concatenate([[0], np.cumsum(lens[touched])]).astype(np.int64)
    m = _core.merge(num_vertices, sub_off, np.ascontiguousarray(verts[sel]), np.ascontiguousarray(lay[sel]),
                    np.ascontiguousarray(unit[sel]), np.ascontiguousarray(remove[sel]))
    sub_group = m["group"].astype(np.int64)
    # Output faces: every untouched face, and every merged group at its first face.
    t_idx = np.flatnonzero(touched)
    g_first = np.full(int(sub_group.max()) + 1 if len(sub_group) else 0, F, np.int64)
    np.minimum.at(g_first, sub_group, t_idx)
    u_idx = np.flatnonzero(~touched)
    first = np.concatenate([u_idx, g_first])                # first input face of each output face
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    group = np.empty(F, np.int64)
    group[u_idx] = rank[:len(u_idx)]
    group[t_idx] = rank[len(u_idx) + sub_group]
    # Cycles in output order: untouched faces from the level, groups from the merge.
    src_len = np.concatenate([lens[u_idx], np.diff(m["face_offsets"])])[order]
    src_start = np.concatenate([off[:-1][u_idx], len(verts) + m["face_offsets"][:-1]])[order]
    new_off = np.concatenate([[0], np.cumsum(src_len)]).astype(np.int64)
    take = np.repeat(src_start - new_off[:-1], src_len) + np.arange(int(new_off[-1]))
    out = {"group": group, "face_offsets": new_off}
    for key, a, b in (("face_verts", verts, m["face_verts"]), ("he_layer", lay, m["he_layer"]),
                      ("he_unit", unit, m["he_unit"])):
        out[key] = np.concatenate([a, b.astype(a.dtype)])[take]
    return out


def _seam_twins(off, verts, lay, num_vertices):
    """The half-edges on the tiles' boundaries (label -1) that have a twin: ``(h, th, fa,
    fb)``, one half ``h`` of each such edge (the smaller index), its twin ``th`` and their
    faces. Only the boundary half-edges are keyed and sorted, not the whole level (whose
    half-edge table would be the stitcher's largest temporary: a sort of every half-edge)."""
    b = np.flatnonzero(lay == -1)
    face = np.searchsorted(off, b, side="right") - 1
    nxt = b + 1
    wrap = nxt == off[face + 1]
    nxt[wrap] = off[face[wrap]]
    u, v = verts[b].astype(np.int64), verts[nxt].astype(np.int64)
    key = np.minimum(u, v) * int(num_vertices) + np.maximum(u, v)
    o = np.argsort(key, kind="stable")
    k = key[o]
    pair = np.flatnonzero(k[1:] == k[:-1])  # o[pair], o[pair + 1]: the two halves of one edge
    i, j = b[o[pair]], b[o[pair + 1]]
    fi, fj = face[o[pair]], face[o[pair + 1]]
    first = i < j
    h, th = np.where(first, i, j), np.where(first, j, i)
    fa, fb = np.where(first, fi, fj), np.where(first, fj, fi)
    s = np.argsort(h, kind="stable")
    return h[s], th[s], fa[s], fb[s]


def _prefix_differs(pa: np.ndarray, pb: np.ndarray, ncols: int) -> np.ndarray:
    """Whether the first ``ncols`` bits of the packed rows ``pa``, ``pb`` differ."""
    nb, rem = divmod(ncols, 8)
    out = (pa[:, :nb] != pb[:, :nb]).any(axis=1)
    if rem:
        mask = np.uint8((0xFF << (8 - rem)) & 0xFF)  # packbits is big-endian within a byte
        out |= ((pa[:, nb] ^ pb[:, nb]) & mask) != 0
    return out


def _bits(nl) -> int:
    """Pattern columns of one hidden layer (see :meth:`Network.all_preactivations`)."""
    return len(nl.breakpoints) * nl.width if nl.kind == "elementwise" else int(np.prod(nl.idx.shape))


def _any_descendant(P: Partition, level: int, prefer: np.ndarray) -> np.ndarray:
    """For each face after layer ``level``: one region of the full partition inside it,
    one of the ``prefer`` regions where it holds any."""
    nf = P._layers[level - 1].num_faces
    anc = P.parents(level) if level < P.num_layers else np.arange(P.num_regions)
    out = np.full(nf, -1, np.int64)
    out[anc] = np.arange(len(anc))
    out[anc[prefer]] = np.flatnonzero(prefer)
    return out
