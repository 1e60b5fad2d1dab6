// Rotated-box geometry shared by the CPU kernels (csrc/cpu/boxes.cpp) and the CUDA kernels
// (csrc/cuda/boxes.cu): plain C++ with no torch or CUDA header, every function usable on the
// host and on the device. Semantics: csrc/ops.h (box ops) and lidarcl/ops/boxes.py.
//
// A box is [x, y, z, l, w, h, yaw] (lidarcl's LiDAR-frame convention): (x, y, z) the gravity
// centre, l along the heading, w across it, yaw counter-clockwise from +x. All arithmetic is
// in double. The BEV intersection of two rectangles is Sutherland-Hodgman clipping of one by
// the four edges of the other (both convex, counter-clockwise), then the shoelace area;
// a point on an edge counts as inside, so identical and touching boxes need no special case
// (touching boxes give a degenerate polygon of zero area).
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define LIDARCL_HD __host__ __device__ __forceinline__
#else
#define LIDARCL_HD inline
#endif

namespace lidarcl {
namespace boxes {

struct Vec2 {
  double x, y;
};

// Corners of the BEV rectangle of box b (7 values), counter-clockwise starting at the
// front-left corner (+l/2, +w/2) in the box frame.
template <typename scalar_t>
LIDARCL_HD void bev_corners(const scalar_t* b, Vec2 out[4]) {
  const double cx = b[0], cy = b[1], hl = 0.5 * double(b[3]), hw = 0.5 * double(b[4]);
  const double c = cos(double(b[6])), s = sin(double(b[6]));
  const double lx[4] = {hl, -hl, -hl, hl};
  const double ly[4] = {hw, hw, -hw, -hw};
  for (int k = 0; k < 4; ++k) {
    out[k].x = cx + (lx[k] * c - ly[k] * s);
    out[k].y = cy + (lx[k] * s + ly[k] * c);
  }
}

// (q - p) x (v - p): > 0 when v lies to the left of the directed edge p -> q.
LIDARCL_HD double edge_side(const Vec2& p, const Vec2& q, const Vec2& v) {
  return (q.x - p.x) * (v.y - p.y) - (q.y - p.y) * (v.x - p.x);
}

constexpr int kMaxClipVertices = 24;

// Clips the convex polygon `poly` (n vertices, counter-clockwise) to the left half-plane of
// p -> q; writes the clipped polygon to `out` (n + 1 vertices at most for a convex input;
// capped at kMaxClipVertices, reached only by rounding noise on degenerate input) and
// returns its number of vertices.
LIDARCL_HD int clip_half_plane(const Vec2* poly, int n, const Vec2& p, const Vec2& q,
                               Vec2* out) {
  int m = 0;
  for (int i = 0; i < n && m < kMaxClipVertices - 1; ++i) {
    const Vec2& a = poly[i];
    const Vec2& b = poly[(i + 1) % n];
    const double da = edge_side(p, q, a), db = edge_side(p, q, b);
    if (da >= 0) out[m++] = a;
    if ((da >= 0) != (db >= 0)) {  // the edge a -> b crosses the line: add the crossing
      const double t = da / (da - db);
      out[m++] = Vec2{a.x + t * (b.x - a.x), a.y + t * (b.y - a.y)};
    }
  }
  return m;
}

LIDARCL_HD double polygon_area(const Vec2* poly, int n) {
  double twice = 0;
  for (int i = 0; i < n; ++i) {
    const Vec2& a = poly[i];
    const Vec2& b = poly[(i + 1) % n];
    twice += a.x * b.y - a.y * b.x;
  }
  return 0.5 * fabs(twice);
}

// Area of the intersection of the BEV rectangles of boxes a and b (>= 0). A rectangle with
// l == 0 or w == 0 has corners that coincide: its edges of zero length keep every vertex
// (edge_side == 0) and the opposite edges squeeze the polygon to a segment of zero area.
template <typename scalar_t>
LIDARCL_HD double bev_intersection(const scalar_t* a, const scalar_t* b) {
  Vec2 ca[4], cb[4];
  bev_corners(a, ca);
  bev_corners(b, cb);
  // quick reject on the circumscribed circles (exact: only skips disjoint pairs)
  const double ra = 0.5 * sqrt(double(a[3]) * a[3] + double(a[4]) * a[4]);
  const double rb = 0.5 * sqrt(double(b[3]) * b[3] + double(b[4]) * b[4]);
  const double dx = double(a[0]) - b[0], dy = double(a[1]) - b[1];
  if (dx * dx + dy * dy > (ra + rb) * (ra + rb) * (1.0 + 1e-12)) return 0.0;
  Vec2 buf0[kMaxClipVertices], buf1[kMaxClipVertices];  // convex: <= 8 vertices
  for (int k = 0; k < 4; ++k) buf0[k] = ca[k];
  int n = 4;
  Vec2* src = buf0;
  Vec2* dst = buf1;
  for (int e = 0; e < 4 && n > 0; ++e) {
    n = clip_half_plane(src, n, cb[e], cb[(e + 1) % 4], dst);
    Vec2* t = src;
    src = dst;
    dst = t;
  }
  return n >= 3 ? polygon_area(src, n) : 0.0;
}

// Overlap of the vertical extents [z - h/2, z + h/2] of two boxes (>= 0).
template <typename scalar_t>
LIDARCL_HD double height_overlap(const scalar_t* a, const scalar_t* b) {
  const double top = fmin(double(a[2]) + 0.5 * a[5], double(b[2]) + 0.5 * b[5]);
  const double bottom = fmax(double(a[2]) - 0.5 * a[5], double(b[2]) - 0.5 * b[5]);
  return top > bottom ? top - bottom : 0.0;
}

// IoU of two boxes: BEV (mode 0: rectangle areas) or 3D (mode 1: volumes). A union of zero
// (two degenerate boxes) gives 0.
template <typename scalar_t>
LIDARCL_HD double box_iou(const scalar_t* a, const scalar_t* b, int mode) {
  double inter = bev_intersection(a, b);
  double size_a = double(a[3]) * a[4], size_b = double(b[3]) * b[4];
  if (mode == 1) {
    inter *= height_overlap(a, b);
    size_a *= a[5];
    size_b *= b[5];
  }
  const double uni = size_a + size_b - inter;
  if (!(uni > 0)) return 0.0;
  const double iou = inter / uni;
  return iou < 0 ? 0.0 : (iou > 1 ? 1.0 : iou);
}

// Whether point p (x, y, z) lies in box b (faces included), tested in the box frame as
// lidarcl.structures.boxes.points_in_boxes does: rel = p - centre,
// local_x = rel_x * cos + rel_y * sin, local_y = -rel_x * sin + rel_y * cos,
// |local_x| <= l/2, |local_y| <= w/2, |rel_z| <= h/2, in double.
template <typename point_t, typename box_t>
LIDARCL_HD bool point_in_box(const point_t* p, const box_t* b) {
  const double rx = double(p[0]) - double(b[0]);
  const double ry = double(p[1]) - double(b[1]);
  const double rz = double(p[2]) - double(b[2]);
  if (fabs(rz) > double(b[5]) / 2) return false;
  const double c = cos(double(b[6])), s = sin(double(b[6]));
  const double local_x = rx * c + ry * s;
  const double local_y = -rx * s + ry * c;
  return fabs(local_x) <= double(b[3]) / 2 && fabs(local_y) <= double(b[4]) / 2;
}

}  // namespace boxes
}  // namespace lidarcl
