"""Z-buffered camera renderer.

Primitives are tessellated into triangles (boxes exactly, cylinders as 16-gon prisms,
ellipsoids as 8 x 16 latitude-longitude meshes), clipped at the near plane and rasterised
with perspective-correct depth. The ground is intersected per pixel with the same
analytic model the lidar uses (``lidar.ground_hit``), so both sensors see one world. Shading:
Lambert sun + ambient, procedural textures (asphalt grain, paving joints, grass, facade
windows, foliage), glass reflections, sky gradient with clouds and distance haze.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

from .constants import GROUND_COLOR, M_GRASS, M_PLAZA, M_SIDEWALK, T_BUILDING, T_FOLIAGE, \
    T_GLASS, T_PAINT
from .lidar import ground_hit
from .objects import (K_BOX, K_CYL, P_A, P_B, P_C, P_COS, P_CX, P_CY, P_CZ, P_KIND, P_SIN)

CYL_SEG = 16
ELL_LAT, ELL_LON = 8, 16
N_TRI = np.array([12, 4 * CYL_SEG - 4, 2 * ELL_LON * (ELL_LAT - 1)], np.int64)
SUN = np.array([0.45, 0.30, 0.84]) / np.linalg.norm([0.45, 0.30, 0.84])


# ------------------------------------------------------------------ tessellation
@nb.njit(cache=True)
def _emit(tris, k, a, b, c):
    for j in range(3):
        tris[k, 0, j] = a[j]
        tris[k, 1, j] = b[j]
        tris[k, 2, j] = c[j]


@nb.njit(cache=True)
def _local_to_world(p, lx, ly, lz):
    c = p[P_COS]
    s = p[P_SIN]
    return np.array([p[P_CX] + c * lx - s * ly, p[P_CY] + s * lx + c * ly, p[P_CZ] + lz])


@nb.njit(cache=True, parallel=True)
def tessellate(prims, offsets, tris, tri_prim):
    for i in nb.prange(prims.shape[0]):
        p = prims[i]
        k = offsets[i]
        kind = int(p[P_KIND])
        a, b, c = p[P_A], p[P_B], p[P_C]
        if kind == K_BOX:
            v = np.empty((8, 3))
            for n in range(8):
                sx = 1.0 if n & 1 else -1.0
                sy = 1.0 if n & 2 else -1.0
                sz = 1.0 if n & 4 else -1.0
                v[n] = _local_to_world(p, sx * a, sy * b, sz * c)
            quads = ((0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2),
                     (1, 3, 7, 5))
            for q in quads:
                _emit(tris, k, v[q[0]], v[q[1]], v[q[2]])
                _emit(tris, k + 1, v[q[0]], v[q[2]], v[q[3]])
                tri_prim[k] = i
                tri_prim[k + 1] = i
                k += 2
        elif kind == K_CYL:
            top = np.empty((CYL_SEG, 3))
            bot = np.empty((CYL_SEG, 3))
            # circumscribed polygon would overshoot; use the inscribed one scaled to equal area
            rr = a * math.sqrt(2 * math.pi / (CYL_SEG * math.sin(2 * math.pi / CYL_SEG)))
            for n in range(CYL_SEG):
                ang = 2 * math.pi * n / CYL_SEG
                top[n] = np.array([p[P_CX] + rr * math.cos(ang), p[P_CY] + rr * math.sin(ang), p[P_CZ] + c])
                bot[n] = np.array([p[P_CX] + rr * math.cos(ang), p[P_CY] + rr * math.sin(ang), p[P_CZ] - c])
            for n in range(CYL_SEG):
                m = (n + 1) % CYL_SEG
                _emit(tris, k, bot[n], bot[m], top[m])
                _emit(tris, k + 1, bot[n], top[m], top[n])
                tri_prim[k] = i
                tri_prim[k + 1] = i
                k += 2
            for n in range(1, CYL_SEG - 1):
                _emit(tris, k, top[0], top[n], top[n + 1])
                _emit(tris, k + 1, bot[0], bot[n + 1], bot[n])
                tri_prim[k] = i
                tri_prim[k + 1] = i
                k += 2
        else:
            v = np.empty((ELL_LAT + 1, ELL_LON, 3))
            for la in range(ELL_LAT + 1):
                th = math.pi * la / ELL_LAT
                for lo in range(ELL_LON):
                    ph = 2 * math.pi * lo / ELL_LON
                    v[la, lo] = np.array([p[P_CX] + a * math.sin(th) * math.cos(ph),
                                          p[P_CY] + a * math.sin(th) * math.sin(ph),
                                          p[P_CZ] + c * math.cos(th)])
            for la in range(ELL_LAT):
                for lo in range(ELL_LON):
                    m = (lo + 1) % ELL_LON
                    if la > 0:
                        _emit(tris, k, v[la, lo], v[la + 1, lo], v[la, m])
                        tri_prim[k] = i
                        k += 1
                    if la < ELL_LAT - 1:
                        _emit(tris, k, v[la, m], v[la + 1, lo], v[la + 1, m])
                        tri_prim[k] = i
                        k += 1


def mesh(prims: np.ndarray):
    """Triangles (T, 3, 3) in world coordinates and the primitive index of each."""
    counts = N_TRI[prims[:, P_KIND].astype(np.int64)]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    total = int(counts.sum())
    tris = np.empty((total, 3, 3))
    tri_prim = np.empty(total, np.int64)
    if len(prims):
        tessellate(prims, offsets, tris, tri_prim)
    return tris, tri_prim


# ------------------------------------------------------------------ rasterisation
@nb.njit(cache=True, inline="always")
def _edge(ax, ay, bx, by, px, py):
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


@nb.njit(cache=True)
def _raster_tri(v, fx, fy, cx, cy, zbuf, ibuf, tid):
    h, w = zbuf.shape
    sx = np.empty(3)
    sy = np.empty(3)
    iz = np.empty(3)
    for j in range(3):
        iz[j] = 1.0 / v[j, 2]
        sx[j] = fx * v[j, 0] * iz[j] + cx
        sy[j] = fy * v[j, 1] * iz[j] + cy
    area = _edge(sx[0], sy[0], sx[1], sy[1], sx[2], sy[2])
    if abs(area) < 1e-12:
        return
    x0 = max(int(math.floor(min(sx[0], sx[1], sx[2]))), 0)
    x1 = min(int(math.ceil(max(sx[0], sx[1], sx[2]))), w - 1)
    y0 = max(int(math.floor(min(sy[0], sy[1], sy[2]))), 0)
    y1 = min(int(math.ceil(max(sy[0], sy[1], sy[2]))), h - 1)
    inv_area = 1.0 / area
    for py in range(y0, y1 + 1):
        pyc = py + 0.5
        for px in range(x0, x1 + 1):
            pxc = px + 0.5
            w0 = _edge(sx[1], sy[1], sx[2], sy[2], pxc, pyc) * inv_area
            w1 = _edge(sx[2], sy[2], sx[0], sy[0], pxc, pyc) * inv_area
            w2 = 1.0 - w0 - w1
            if w0 < 0 or w1 < 0 or w2 < 0:
                continue
            z = 1.0 / (w0 * iz[0] + w1 * iz[1] + w2 * iz[2])
            if z < zbuf[py, px]:
                zbuf[py, px] = z
                ibuf[py, px] = tid


@nb.njit(cache=True)
def rasterize(tris_cam, fx, fy, cx, cy, near, zbuf, ibuf):
    """Rasterise camera-frame triangles (x right, y down, z forward) into the buffers."""
    poly = np.empty((4, 3))
    tri = np.empty((3, 3))
    for t in range(tris_cam.shape[0]):
        v = tris_cam[t]
        n_in = 0
        for j in range(3):
            if v[j, 2] > near:
                n_in += 1
        if n_in == 0:
            continue
        if n_in == 3:
            _raster_tri(v, fx, fy, cx, cy, zbuf, ibuf, t)
            continue
        # Sutherland-Hodgman against z = near
        m = 0
        for j in range(3):
            a = v[j]
            b = v[(j + 1) % 3]
            ain = a[2] > near
            bin_ = b[2] > near
            if ain:
                poly[m] = a
                m += 1
            if ain != bin_:
                s = (near - a[2]) / (b[2] - a[2])
                poly[m] = a + s * (b - a)
                poly[m, 2] = near + 1e-9
                m += 1
        for j in range(1, m - 1):
            tri[0] = poly[0]
            tri[1] = poly[j]
            tri[2] = poly[j + 1]
            _raster_tri(tri, fx, fy, cx, cy, zbuf, ibuf, t)


# ------------------------------------------------------------------ shading
@nb.njit(cache=True, inline="always")
def _hash(ix, iy, iz):
    h = (ix * 374761393 + iy * 668265263 + iz * 2147483647) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return (h & 0xFFFF) / 65535.0


@nb.njit(cache=True)
def _vnoise(x, y, z):
    ix, iy, iz = math.floor(x), math.floor(y), math.floor(z)
    fx, fy, fz = x - ix, y - iy, z - iz
    fx = fx * fx * (3 - 2 * fx)
    fy = fy * fy * (3 - 2 * fy)
    fz = fz * fz * (3 - 2 * fz)
    ix, iy, iz = int(ix), int(iy), int(iz)
    acc = 0.0
    for dz in range(2):
        for dy in range(2):
            for dx in range(2):
                wgt = (fx if dx else 1 - fx) * (fy if dy else 1 - fy) * (fz if dz else 1 - fz)
                acc += wgt * _hash(ix + dx, iy + dy, iz + dz)
    return acc


@nb.njit(cache=True)
def _sky(dx, dy, dz):
    e = max(dz, 0.0)
    horizon = np.array([0.80, 0.85, 0.90])
    zenith = np.array([0.35, 0.55, 0.85])
    t = min(1.0, e * 2.5)
    col = horizon * (1 - t) + zenith * t
    if dz > 0.01:
        k = 1.0 / dz
        cloud = _vnoise(dx * k * 2.0, dy * k * 2.0, 0.5) * 0.6 + _vnoise(dx * k * 6.0, dy * k * 6.0, 3.5) * 0.4
        cloud = max(0.0, cloud - 0.45) * 2.2 * min(1.0, dz * 6)
        col = col * (1 - cloud) + np.array([0.95, 0.95, 0.96]) * cloud
    return col


@nb.njit(cache=True, parallel=True)
def shade(zbuf, ibuf, tri_prim, tri_normal, prims, cam2world, fx, fy, cx, cy, max_depth,
          roads_x, roads_y, blocks, sidewalk, ext, ground_color, sun, image, depth, noise_seed):
    """Fill ``image`` (H, W, 3) float and ``depth`` (camera z, 0 = sky) for one camera."""
    h, w = zbuf.shape
    R = cam2world[:3, :3]
    ox, oy, oz = cam2world[0, 3], cam2world[1, 3], cam2world[2, 3]
    haze = np.array([0.80, 0.84, 0.88])
    for py in nb.prange(h):
        for px in range(w):
            rcx = (px + 0.5 - cx) / fx
            rcy = (py + 0.5 - cy) / fy
            norm = math.sqrt(rcx * rcx + rcy * rcy + 1.0)
            dx = (R[0, 0] * rcx + R[0, 1] * rcy + R[0, 2]) / norm
            dy = (R[1, 0] * rcx + R[1, 1] * rcy + R[1, 2]) / norm
            dz = (R[2, 0] * rcx + R[2, 1] * rcy + R[2, 2]) / norm
            zo = zbuf[py, px]
            tg, mat = ground_hit(ox, oy, oz, dx, dy, dz, max_depth * norm, roads_x, roads_y,
                                 blocks, sidewalk, ext)
            zg = tg / norm
            col = np.zeros(3)
            if zg < zo and zg < max_depth:
                z = zg
                wx = ox + tg * dx
                wy = oy + tg * dy
                col[:] = ground_color[mat]
                grain = _hash(int(math.floor(wx * 40)), int(math.floor(wy * 40)), noise_seed)
                low = _vnoise(wx * 0.35, wy * 0.35, 7.0)
                f = 0.88 + 0.12 * grain + 0.18 * (low - 0.5)
                if mat == M_SIDEWALK or mat == M_PLAZA:
                    gx = (wx % 0.6) / 0.6
                    gy = (wy % 0.6) / 0.6
                    if gx < 0.04 or gy < 0.04:
                        f *= 0.82
                if mat == M_GRASS:
                    f = 0.75 + 0.3 * _vnoise(wx * 2.0, wy * 2.0, 1.0) + 0.15 * grain
                light = 0.55 + 0.45 * sun[2]
                for j in range(3):
                    col[j] *= f * light
            elif zo < max_depth:
                z = zo
                t3 = z * norm
                wx = ox + t3 * dx
                wy = oy + t3 * dy
                wz = oz + t3 * dz
                tri = ibuf[py, px]
                pi = tri_prim[tri]
                p = prims[pi]
                nx, ny, nz = tri_normal[tri, 0], tri_normal[tri, 1], tri_normal[tri, 2]
                if nx * dx + ny * dy + nz * dz > 0:
                    nx, ny, nz = -nx, -ny, -nz
                base = np.array([p[14], p[15], p[16]])
                tex = int(p[13])
                lam = max(0.0, nx * sun[0] + ny * sun[1] + nz * sun[2])
                light = 0.45 + 0.6 * lam
                grain = _hash(int(math.floor(wx * 30)), int(math.floor(wy * 30)),
                              int(math.floor(wz * 30)) + noise_seed)
                f = 0.94 + 0.1 * grain
                if tex == T_BUILDING:
                    if nz > 0.7:
                        base = base * 0.55
                    else:
                        u = wy if abs(nx) > abs(ny) else wx
                        fl = (wz - 0.15) % 3.4
                        cu = u % 3.2
                        if wz > 0.8 and 0.9 < fl < 2.5 and 0.5 < cu < 2.5:
                            refl = _vnoise(u * 0.2, wz * 0.2, pi * 0.37)
                            base = np.array([0.16, 0.19, 0.24]) * (0.6 + 0.8 * refl) + 0.15 * lam
                            light = 1.0
                        f *= 0.9 + 0.2 * _vnoise(wx * 0.5, wy * 0.5, wz * 0.5)
                elif tex == T_FOLIAGE:
                    f = 0.6 + 0.55 * _vnoise(wx * 3.0, wy * 3.0, wz * 3.0) + 0.2 * grain
                elif tex == T_GLASS:
                    sky = _sky(dx - 2 * nx * (nx * dx + ny * dy + nz * dz),
                               dy - 2 * ny * (nx * dx + ny * dy + nz * dz),
                               abs(dz - 2 * nz * (nx * dx + ny * dy + nz * dz)))
                    base = base * 0.7 + sky * 0.25
                    light = 1.0
                elif tex == T_PAINT:
                    hx = sun[0] - dx
                    hy = sun[1] - dy
                    hz = sun[2] - dz
                    hn = math.sqrt(hx * hx + hy * hy + hz * hz) + 1e-9
                    spec = max(0.0, (nx * hx + ny * hy + nz * hz) / hn) ** 40
                    base = base + 0.5 * spec
                for j in range(3):
                    col[j] = base[j] * light * f
            else:
                z = 0.0
                sk = _sky(dx, dy, dz)
                for j in range(3):
                    col[j] = sk[j]
                image[py, px, 0] = col[0]
                image[py, px, 1] = col[1]
                image[py, px, 2] = col[2]
                depth[py, px] = 0.0
                continue
            fog = 1.0 - math.exp(-z * norm / 450.0)
            for j in range(3):
                image[py, px, j] = col[j] * (1 - fog) + haze[j] * fog
            depth[py, px] = z


def render(prims, cam2world, intrinsics, image_size, layout, noise_seed=0, max_depth=300.0,
           near=0.1):
    """Render one camera. ``intrinsics`` = (fx, fy, cx, cy) at ``image_size`` = (W, H).

    Returns ``(rgb uint8 (H, W, 3), depth float32 (H, W) camera z in metres, 0 for sky)``.
    """
    w, h = image_size
    fx, fy, cx, cy = intrinsics
    cam2world = np.asarray(cam2world, dtype=np.float64)
    world2cam = np.linalg.inv(cam2world)
    pos = cam2world[:3, 3]
    fwd = cam2world[:3, 2]
    # cull primitives behind the camera or too far
    from .objects import P_RAD as _RAD
    rel = prims[:, [P_CX, P_CY, P_CZ]] - pos
    rad3 = np.hypot(prims[:, _RAD], prims[:, P_C])
    keep = (rel @ fwd > -rad3) & (np.linalg.norm(rel, axis=1) - rad3 < max_depth)
    sel = prims[keep]
    tris, tri_prim = mesh(sel)
    e1 = tris[:, 1] - tris[:, 0]
    e2 = tris[:, 2] - tris[:, 0]
    nrm = np.cross(e1, e2)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-12
    tris_cam = tris @ world2cam[:3, :3].T + world2cam[:3, 3]
    zbuf = np.full((h, w), np.inf)
    ibuf = np.full((h, w), -1, np.int64)
    rasterize(tris_cam, fx, fy, cx, cy, near, zbuf, ibuf)
    image = np.empty((h, w, 3))
    depth = np.empty((h, w), np.float32)
    shade(zbuf, ibuf, tri_prim, nrm, sel, cam2world, fx, fy, cx, cy, max_depth,
          layout.roads_x, layout.roads_y, layout.blocks, layout.sidewalk, layout.half_extent,
          GROUND_COLOR, SUN, image, depth, noise_seed)
    rgb = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    return rgb, depth
