// Per-element bodies shared by the CPU and CUDA launchers: tolerance snapping of
// breakpoint values and the crossing of a breakpoint function's zero set with an edge.
//
// Everything here follows from values at vertices (see DESIGN.md): inside a face of the
// previous partition a breakpoint function is affine, so along an edge (a, b) it is
// linear and its zero sits at t = z(a) / (z(a) - z(b)); every other value carried by the
// vertices is interpolated with the same t. No geometric predicate is ever evaluated.
#pragma once

#include <cmath>

#include "common.h"

namespace splinecam {

// Sign of a snapped value: exact comparison with zero (values within the tolerance were
// set to exactly 0 by snap_row).
SPLINECAM_HD int sign_of(double z) { return (z > 0.0) - (z < 0.0); }

// Parameter of the zero crossing along a -> b, measured from a. Callers always pass the
// endpoints in canonical order (smaller vertex id first) so that the two faces that share
// an edge compute bit-identical crossings.
SPLINECAM_HD double crossing_t(double za, double zb) { return za / (za - zb); }

// The snapping tolerance of a column: t = rtol * max |z| over the vertices, lowered to
// the column's cap, then raised to its floor: values below the floor are rounding noise,
// whatever the cap (two breakpoints closer than the noise cannot be told apart).
SPLINECAM_HD double bounded_tolerance(double t, double floor, double cap) {
  t = t > cap ? cap : t;
  return t < floor ? floor : t;
}

// Snap the first n_cut entries of one row: |z| <= tol[j] becomes exactly 0.
// row: [n_cols] values of one vertex; tol: [n_cut] per-column absolute tolerance.
// Returns the number of entries that are exactly zero afterwards.
// Branch-free: the signs of a layer's values are as good as random, and a mispredicted
// branch per value cost more than the rest of the loop.
SPLINECAM_HD int snap_row(double* row, const double* tol, int n_cut) {
  int zeros = 0;
  for (int j = 0; j < n_cut; ++j) {
    const double z = row[j];
    const bool zero = z <= tol[j] && z >= -tol[j];  // false for NaN
    row[j] = zero ? 0.0 : z;
    zeros += zero;
  }
  return zeros;
}

// The crossing of a column with values za, zb at the ends of a -> b, as an end and a
// parameter measured from it: from the nearer end (the one with the smaller |z|), so that
// a crossing close to a vertex lands within rounding of that vertex's own coordinates,
// not within rounding of the far end's (a point 1e-15 from a vertex at the origin, on an
// edge of length 2, is then placed to 1e-31, not to 2e-16).
struct Crossing {
  bool from_b;  // measured from b (else from a)
  double t;     // parameter from that end
};

SPLINECAM_HD Crossing crossing_of(double za, double zb) {
  const double aa = za < 0.0 ? -za : za, ab = zb < 0.0 ? -zb : zb;
  if (aa <= ab) return Crossing{false, za / (za - zb)};
  return Crossing{true, zb / (zb - za)};
}

// One value interpolated at crossing c of a -> b.
SPLINECAM_HD double lerp_at(double a, double b, Crossing c) {
  return c.from_b ? b + c.t * (a - b) : a + c.t * (b - a);
}

// The distance from |x| to the next float64 away from zero.
SPLINECAM_HD double ulp_of(double x) {
  x = x < 0.0 ? -x : x;
  return nextafter(x, 2.0 * x + 1.0) - x;
}

// The point one resolvable step from p toward q: p + s (q - p) for the smallest s
// (doubling from one ulp of p's faster-moving coordinate) at which it is neither p nor q
// in float64; p itself when there is no such point up to the middle of p -> q. out may
// not alias p or q.
SPLINECAM_HD void step_off(const double* p, const double* q, double* out) {
  const double dx = q[0] - p[0], dy = q[1] - p[1];
  const double ax = dx < 0.0 ? -dx : dx, ay = dy < 0.0 ? -dy : dy;
  out[0] = p[0];
  out[1] = p[1];
  if (ax == 0.0 && ay == 0.0) return;
  double s = ax >= ay ? ulp_of(p[0]) / ax : ulp_of(p[1]) / ay;
  for (int it = 0; it < 64 && s <= 0.5; ++it, s *= 2.0) {
    const double x = p[0] + s * dx, y = p[1] + s * dy;
    if ((x != p[0] || y != p[1]) && (x != q[0] || y != q[1])) {
      out[0] = x;
      out[1] = y;
      return;
    }
  }
}

// out[k] = the values a[k], b[k] interpolated at crossing c, for k < n. Used for
// coordinates and value rows.
SPLINECAM_HD void lerp_row_at(const double* a, const double* b, Crossing c, double* out, int n) {
  for (int k = 0; k < n; ++k) out[k] = lerp_at(a[k], b[k], c);
}

}  // namespace splinecam
