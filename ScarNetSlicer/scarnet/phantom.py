"""Seeded synthetic short-axis LGE stacks with exact labels (for tests, demos and training data).

``make_phantom(seed)`` builds a small 3D anatomy, cuts it with an oblique short-axis stack and
"acquires" it. What a phantom contains:

* Torso: irregular elliptic outline with bright subcutaneous fat, chest-wall muscle and ribs,
  dark lungs on either side of the heart above a two-dome diaphragm, grey liver (appearing in
  the inferior / apical part of the slices), stomach and bowel loops, spine with back muscles,
  descending aorta and IVC, and small vessels / fat lobules. A smooth 3D deformation keeps the
  organs from being perfect quadrics.
* Heart: LV cavity 20-28 mm radius at the base shrinking to the apex (the most apical slice may
  be all myocardium), wall 7.5-10.5 mm with regional variation and a thicker septum, thinning
  towards the apex; papillary muscles and trabeculae (dark, labelled blood pool as in EMIDEC);
  an RV crescent with a thin wall wrapping the septum between the two insertion points; patchy
  bright epicardial fat (more in the grooves and at the base); aortic root and a thinner
  anteroseptal wall in basal slices, atrial blood above the mitral plane.
* Infarct (about 75 % of phantoms, or forced): an LAD (anterior + anteroseptal, to the apex),
  LCX (lateral) or RCA (inferior + inferoseptal) territory, always from the endocardium outward,
  25 %-transmural to transmural with an irregular wavefront, over a contiguous range of slices;
  MVO (a dark subendocardial core in the thickest part) in some of them.
* LGE contrast: nulled myocardium, bright blood, scar brighter than blood, dark MVO, bright fat,
  dark lungs. ``randomize_appearance=True`` draws tissue values within the LGE orderings, and
  sometimes a PSIR-like real-valued image around an offset, strong bias, low SNR, ghosting,
  black padding.
* Acquisition: the heart is rendered on a 2x finer in-plane grid and at 3 depths through the
  slice thickness, then averaged (partial volume and slice-thickness blur); torso edges get a
  one-pixel partial-volume ramp. Then tissue texture, in-plane blur (anisotropic: coarser along
  the phase direction), a smooth multiplicative surface-coil bias field, optional respiratory
  ghosting along the phase direction, and Rician noise (magnitude of complex Gaussian).

The labelmap comes from the very same sub-samples as the image (a nested majority vote: LV vs
background, then scar within myocardium, then MVO within scar), so image and labels agree voxel
by voxel, scar is only ever myocardium and MVO only ever inside scar.

Coordinates. Everything is placed in a patient (LPS, mm) frame: x to the patient's left, y
posterior, z superior. The left ventricle has its own frame: ``L`` (unit long axis, base to apex),
``a`` (in-plane, towards the lateral wall) and ``b`` (in-plane, towards anterior). Inside the LV
frame an angle ``theta = atan2(b, a)`` is 0 at the lateral wall, +90 deg anterior, 180 deg at the
septum and -90 deg inferior, so coronary territories are simple angle ranges. ``z`` along ``L`` is
0 at the mitral (base) plane and grows towards the apex. ``info["lv_frame_lps"]`` gives L, a, b.

The image grid is a proper ITK grid: ``direction`` columns are the row, column and slice
directions (a right-handed, oblique rotation whose in-plane part is randomly turned), ``origin``
is the centre of voxel (0, 0, 0), and slice k lies ``k * spacing_mm[2]`` along the slice normal,
so the 3D geometry is consistent. Slices run base-to-apex or apex-to-base (``info["slice_order"]``).

Only numpy and scipy.ndimage are used; the same seed and arguments give bit-identical output
(``np.random.default_rng(seed)``, no global state), in about 0.15-0.3 s of one CPU core.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from .aha import outermost_wall_point_lps
from .labels import BACKGROUND, HEALTHY_MYOCARDIUM, LV_BLOOD_POOL, MVO, SCAR
from .volume import Volume

__all__ = ["Phantom", "make_phantom", "anterior_rv_insertion_lps", "inferior_rv_insertion_lps", "TERRITORIES"]

#: Coronary territories an infarct can follow (AHA segments, see :func:`_sample_infarct`).
TERRITORIES = ("LAD", "LCX", "RCA")

# In-plane supersampling factor and number of sub-slices through the slice thickness used for
# partial volume. 2 x 2 x 3 = 12 sub-samples per voxel keeps a phantom well under a second.
_SUPERSAMPLE = 2
_SUB_SLICES = 3

# Heart tissue codes on the fine grid (0 = no heart: the torso shows through).
_T_NONE, _T_FAT, _T_RV_BLOOD, _T_RV_WALL, _T_LV_MYO, _T_LV_BLOOD = 0, 1, 2, 3, 4, 5
_T_PAPILLARY, _T_SCAR, _T_MVO, _T_GREAT_VESSEL = 6, 7, 8, 9
_N_CODES = 10
# Label of each heart tissue code (papillary muscles belong to the blood pool, as in EMIDEC).
_CODE_LABEL = np.array(
    [BACKGROUND, BACKGROUND, BACKGROUND, BACKGROUND, HEALTHY_MYOCARDIUM, LV_BLOOD_POOL, LV_BLOOD_POOL,
     SCAR, MVO, BACKGROUND],
    dtype=np.uint8,
)  # fmt: skip


@dataclass
class Phantom:
    """A synthetic LGE stack, its exact labelmap on the same grid, and how it was made."""

    image: Volume  # float32 LGE intensities (arbitrary MR units, >= 0)
    labelmap: Volume  # uint8: 0 bg, 1 LV blood pool, 2 healthy myocardium, 3 scar (without MVO), 4 MVO
    info: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable description


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


class _AngularField:
    """A smooth random periodic function of an angle: sum of a few harmonics (radians in, unitless out)."""

    def __init__(self, rng: np.random.Generator, harmonics: tuple[int, ...], amplitude: float) -> None:
        self.n = np.asarray(harmonics, dtype=np.float32)
        # Amplitudes fall off as 1/sqrt(n) so higher harmonics add texture but not spikes.
        amp = amplitude * rng.uniform(0.3, 1.0, len(harmonics)) / np.sqrt(self.n)
        self.amp = amp.astype(np.float32)
        self.phase = rng.uniform(0, 2 * np.pi, len(harmonics)).astype(np.float32)

    def __call__(self, theta: np.ndarray | float) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float32)
        out = np.zeros_like(theta)
        for n, a, p in zip(self.n, self.amp, self.phase):
            out += a * np.cos(n * theta + p)
        return out

    def on(self, harmonics: _Harmonics) -> np.ndarray:
        """The field on a grid whose cos/sin(n theta) are cached in ``harmonics`` (no trig calls)."""
        out = np.zeros_like(harmonics.cos1)
        for n, a, p in zip(self.n, self.amp, self.phase):
            c, s = harmonics.get(int(n))
            out += (a * math.cos(p)) * c - (a * math.sin(p)) * s
        return out


class _Harmonics:
    """cos(n theta) and sin(n theta) of an angle grid from cos/sin theta by the angle-addition
    recurrence: a few multiplications per harmonic instead of one trig call per pixel."""

    def __init__(self, cos1: np.ndarray, sin1: np.ndarray) -> None:
        self.cos1, self.sin1 = cos1.astype(np.float32), sin1.astype(np.float32)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {1: (self.cos1, self.sin1)}

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        m = max(self._cache)
        while m < n:
            c, s = self._cache[m]
            self._cache[m + 1] = (c * self.cos1 - s * self.sin1, s * self.cos1 + c * self.sin1)
            m += 1
        return self._cache[n]

    def bump(self, centre: float, width: float) -> np.ndarray:
        """exp(-(delta / width)^2) for small delta = theta - centre, periodic (von Mises form)."""
        cos_delta = self.cos1 * math.cos(centre) + self.sin1 * math.sin(centre)
        return np.exp((cos_delta - 1.0) * (2.0 / (width * width)))


def _wrap(angle: np.ndarray | float) -> np.ndarray:
    """Angle difference wrapped to [-pi, pi]."""
    angle = np.asarray(angle)
    return angle - (2 * np.pi) * np.rint(angle / (2 * np.pi))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _jsonable(value: Any) -> Any:
    """Plain Python types only, so ``json.dumps(info)`` works."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value


# ----------------------------------------------------------------------------------------------
# Acquisition and geometry
# ----------------------------------------------------------------------------------------------
@dataclass
class _Acquisition:
    n_slices: int
    spacing_mm: tuple[float, float, float]  # (i, j, k); k = centre-to-centre slice distance
    thickness_mm: float
    size_ij: tuple[int, int]  # (columns, rows)
    phase_axis: str  # "i" or "j"
    base_to_apex: bool  # slice index grows from base to apex
    first_slice_z_mm: float  # position of the most basal slice below the mitral plane
    rotation_deg: float  # in-plane rotation of the anatomy in the image


def _sample_acquisition(
    rng: np.random.Generator, n_slices: int | None, spacing_mm: tuple[float, float, float] | None
) -> _Acquisition:
    if spacing_mm is not None:
        if len(spacing_mm) != 3 or min(spacing_mm) <= 0:
            raise ValueError(f"spacing_mm must be three positive numbers, got {spacing_mm!r}")
        si, sj, sk = (float(s) for s in spacing_mm)
        thickness = min(sk, _uniform(rng, 6.0, 10.0))
    else:
        si = _uniform(rng, 1.2, 2.0)
        sj = si  # reconstructed pixels are square in practice
        thickness = _uniform(rng, 6.0, 10.0)
        gap = 0.0 if rng.random() < 0.35 else _uniform(rng, 0.5, 4.0)
        sk = thickness + gap
    if n_slices is None:
        n = int(rng.integers(6, 15))
        # Keep the stack about the length of an LV (55-95 mm of slice centres) like a real SAX stack.
        n = min(n, int(95.0 // sk) + 1)
        n = max(n, min(14, int(math.ceil(55.0 / sk)) + 1))
        n = int(np.clip(n, 6, 14))
    else:
        n = int(n_slices)
        if not 1 <= n <= 64:
            raise ValueError(f"n_slices must be in 1..64, got {n_slices!r}")

    fov_read_mm = _uniform(rng, 300.0, 400.0)
    n_read = int(np.clip(round(fov_read_mm / si / 2) * 2, 160, 320))
    n_phase = int(np.clip(round(n_read * _uniform(rng, 0.75, 1.0) / 2) * 2, 128, 320))
    phase_axis = "j" if rng.random() < 0.6 else "i"
    size_ij = (n_read, n_phase) if phase_axis == "j" else (n_phase, n_read)
    return _Acquisition(
        n_slices=n,
        spacing_mm=(si, sj, sk),
        thickness_mm=thickness,
        size_ij=size_ij,
        phase_axis=phase_axis,
        base_to_apex=bool(rng.random() < 0.5),
        first_slice_z_mm=_uniform(rng, 0.3, 0.6) * thickness + _uniform(rng, 0.0, 5.0),
        rotation_deg=_uniform(rng, 0.0, 360.0),
    )


@dataclass
class _Frame:
    """LV frame and image grid in body coordinates (LPS, mm; body midline at x = 0)."""

    long_axis: np.ndarray  # L, base -> apex
    lateral: np.ndarray  # a
    anterior: np.ndarray  # b
    base_centre: np.ndarray  # LV centre on the mitral plane
    drift_ab_per_mm: tuple[float, float]  # LV centre shift per mm of z (a curved long axis)
    direction: np.ndarray  # image direction matrix (columns i, j, k)
    origin_body: np.ndarray  # centre of voxel (0, 0, 0) in body coordinates
    table_offset: np.ndarray  # body -> scanner LPS translation
    z_of_slice: np.ndarray  # z (mm below the mitral plane) of each slice

    def lv_centre(self, z_mm: float) -> np.ndarray:
        da, db = self.drift_ab_per_mm
        return self.base_centre + z_mm * self.long_axis + z_mm * (da * self.lateral + db * self.anterior)


def _sample_frame(rng: np.random.Generator, acq: _Acquisition, body: _Body) -> _Frame:
    # Typical LV long axis (base -> apex) points left, anterior and inferior: LPS (+x, -y, -z),
    # perturbed by up to ~15 degrees so every phantom's planes are differently oblique.
    long_axis = _unit(np.array([0.62, -0.55, -0.56]) + rng.normal(0, 0.13, 3))
    # 'Anterior' in the short-axis plane: the projection of anterior-superior, so that the inferior
    # wall faces the diaphragm (posterior-inferior) as in a patient.
    towards = _unit(np.array([0.0, -1.0, 0.6]))
    anterior = _unit(towards - long_axis * float(towards @ long_axis))
    lateral = _unit(np.cross(anterior, long_axis))
    if lateral[0] < 0:  # make 'a' point to the patient's left (the lateral wall)
        lateral = -lateral
    base_centre = np.array(
        [_uniform(rng, 10.0, 35.0), -body.ry_mm * _uniform(rng, 0.05, 0.3), _uniform(rng, -10.0, 10.0)]
    )
    drift = (_uniform(rng, -0.08, 0.08), _uniform(rng, -0.08, 0.08))

    # Image axes: rotate (a, b) in-plane, then k along +-L with j = k x i (a proper rotation).
    phi = math.radians(acq.rotation_deg)
    e_i = math.cos(phi) * lateral + math.sin(phi) * anterior
    e_k = long_axis if acq.base_to_apex else -long_axis
    e_j = np.cross(e_k, e_i)
    direction = np.stack([e_i, e_j, e_k], axis=1)

    n = acq.n_slices
    si, sj, sk = acq.spacing_mm
    ni, nj = acq.size_ij
    z_sorted = acq.first_slice_z_mm + sk * np.arange(n)  # base -> apex
    z_of_slice = z_sorted if acq.base_to_apex else z_sorted[::-1]
    # Put the heart off-centre by up to 15 % of the FOV; slice 0's image centre sits there.
    shift_i = _uniform(rng, -0.15, 0.15) * ni * si
    shift_j = _uniform(rng, -0.15, 0.15) * nj * sj
    mid_z = float(np.mean(z_sorted))
    centre0 = base_centre + z_of_slice[0] * long_axis + mid_z * (drift[0] * lateral + drift[1] * anterior)
    centre0 = centre0 + shift_i * e_i + shift_j * e_j
    origin_body = centre0 - e_i * si * (ni - 1) / 2 - e_j * sj * (nj - 1) / 2
    table_offset = np.array([_uniform(rng, -20, 20), _uniform(rng, -40, 0), _uniform(rng, -120, 60)])
    return _Frame(
        long_axis=long_axis,
        lateral=lateral,
        anterior=anterior,
        base_centre=base_centre,
        drift_ab_per_mm=drift,
        direction=direction,
        origin_body=origin_body,
        table_offset=table_offset,
        z_of_slice=z_of_slice,
    )


# ----------------------------------------------------------------------------------------------
# Body (everything but the heart), evaluated at native resolution with soft (partial-volume) edges
# ----------------------------------------------------------------------------------------------
@dataclass
class _Blob:
    """An ellipsoid of one tissue (vessel, bowel loop, fat lobule) confined to one body region."""

    centre: np.ndarray  # body mm
    radii_mm: np.ndarray
    tissue: str  # a key of the contrast table
    region: str  # "liver", "abdomen", "mediastinum" or "lung"
    gain: float  # intensity multiplier on the tissue value


@dataclass
class _Body:
    rx_mm: float  # torso half width
    ry_mm: float  # torso half depth (antero-posterior)
    torso_field: _AngularField  # irregular body outline
    fat_mm: float
    fat_field: _AngularField
    muscle_mm: float
    muscle_field: _AngularField
    dome_left_z_mm: float  # top of the left hemidiaphragm
    dome_right_z_mm: float  # top of the right hemidiaphragm (higher: the liver is under it)
    dome_radius_mm: float  # curvature of the domes
    liver_left_edge_mm: float  # x of the liver's left lobe tip (anterior)
    mediastinum_left_mm: float  # lungs start this far from the midline
    mediastinum_right_mm: float
    rib_pitch_mm: float
    rib_phase_mm: float
    aorta_radius_mm: float
    vertebra_radius_mm: float
    blobs: list[_Blob]
    # Smooth 3D deformation (sum of plane waves) so organ outlines are not perfect quadrics.
    warp_k: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # rad/mm
    warp_amp: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # mm
    warp_phase: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def warp(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, y, z = x.copy(), y.copy(), z.copy()
        for k, amp, ph in zip(self.warp_k, self.warp_amp, self.warp_phase):
            s = np.sin(x * np.float32(k[0]) + y * np.float32(k[1]) + z * np.float32(k[2]) + np.float32(ph))
            x += np.float32(amp[0]) * s
            y += np.float32(amp[1]) * s
            z += np.float32(amp[2]) * s
        return x, y, z


def _sample_body(rng: np.random.Generator) -> _Body:
    rx, ry = _uniform(rng, 150.0, 190.0), _uniform(rng, 100.0, 130.0)
    dome_left = _uniform(rng, -70.0, -40.0)
    body = _Body(
        rx_mm=rx,
        ry_mm=ry,
        torso_field=_AngularField(rng, (2, 3, 4), 0.05),
        fat_mm=_uniform(rng, 8.0, 24.0),
        fat_field=_AngularField(rng, (1, 2, 3), 0.5),
        muscle_mm=_uniform(rng, 7.0, 14.0),
        muscle_field=_AngularField(rng, (2, 3, 5), 0.5),
        dome_left_z_mm=dome_left,
        dome_right_z_mm=dome_left + _uniform(rng, 10.0, 35.0),
        dome_radius_mm=_uniform(rng, 90.0, 150.0),
        liver_left_edge_mm=_uniform(rng, 10.0, 60.0),
        mediastinum_left_mm=_uniform(rng, -5.0, 15.0),
        mediastinum_right_mm=_uniform(rng, 15.0, 30.0),
        rib_pitch_mm=_uniform(rng, 24.0, 32.0),
        rib_phase_mm=_uniform(rng, 0.0, 30.0),
        aorta_radius_mm=_uniform(rng, 10.0, 14.0),
        vertebra_radius_mm=_uniform(rng, 15.0, 20.0),
        blobs=[],
    )
    n_waves = 6
    wavelength_mm = rng.uniform(70.0, 220.0, n_waves)
    dirs = rng.normal(size=(n_waves, 3))
    body.warp_k = (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)) * (2 * np.pi / wavelength_mm)[:, None]
    body.warp_amp = rng.normal(0.0, 1.0, (n_waves, 3)) * (wavelength_mm / 28.0)[:, None]
    body.warp_phase = rng.uniform(0, 2 * np.pi, n_waves)
    # Small structures that make real images busy: hepatic vessels, bowel loops, mediastinal
    # vessels and fat, pulmonary vessels. Placed in body coordinates so they are 3D-consistent.
    zl = dome_left
    abdomen_box = ((-0.7 * rx, 0.8 * rx), (-0.8 * ry, 0.5 * ry), (zl - 160, zl))
    lung_box = ((-0.8 * rx, 0.8 * rx), (-0.7 * ry, 0.7 * ry), (-80.0, 120.0))
    liver_box = ((-0.8 * rx, 40.0), (-0.7 * ry, 0.6 * ry), (zl - 140, zl + 30))
    mediastinum_box = ((-50.0, 60.0), (-0.8 * ry, 0.6 * ry), (-60.0, 120.0))
    # fmt: off
    blob_table = (
        # count, region, tissue, radius range (mm), gain range, box (x, y, z ranges in mm)
        (30, "liver", "vessel", (2.0, 6.0), (0.45, 0.9), liver_box),
        (40, "abdomen", "stomach", (6.0, 18.0), (0.3, 1.8), abdomen_box),
        (10, "abdomen", "fat", (6.0, 14.0), (0.6, 1.0), abdomen_box),
        (10, "mediastinum", "vessel", (5.0, 13.0), (0.7, 1.1), mediastinum_box),
        (8, "mediastinum", "fat", (6.0, 16.0), (0.6, 1.0), mediastinum_box),
        (150, "lung", "vessel", (1.2, 3.0), (0.2, 0.45), lung_box),
    )
    # fmt: on
    for count, region, tissue, (r_lo, r_hi), (g_lo, g_hi), box in blob_table:
        for _ in range(count):
            centre = np.array([_uniform(rng, *box[0]), _uniform(rng, *box[1]), _uniform(rng, *box[2])])
            # Elongated along z (vessels, bowel run mostly cranio-caudally).
            radii = rng.uniform(r_lo, r_hi, 3) * np.array([1.0, 1.0, _uniform(rng, 1.0, 3.0)])
            body.blobs.append(_Blob(centre, radii, tissue, region, _uniform(rng, g_lo, g_hi)))
    return body


def _ramp(signed_mm: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Partial-volume membership from a signed distance (mm, > 0 inside) with a one-pixel ramp."""
    return np.clip(0.5 + signed_mm / pixel_mm, 0.0, 1.0)


def _render_body(
    body: _Body,
    c: dict[str, float],
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    pixel_mm: float,
    blob_boxes: list[tuple[_Blob, slice, slice]],
) -> np.ndarray:
    """Noise-free LGE signal of the torso on one slice (painter's algorithm, outside in)."""
    rx, ry = body.rx_mm, body.ry_mm
    x, y, z = body.warp(x, y, z)

    def cyl(cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
        q = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2
        return _ramp((1.0 - q) * (0.5 * min(ax, ay)), pixel_mm)

    def paint(img: np.ndarray, mask: np.ndarray, value: float) -> None:
        img += mask * (value - img)

    # Depth below the skin along rays from the body axis: (1 - rho) * (ellipse radius along phi).
    rho = np.hypot(x, y)
    rho_safe = np.maximum(rho, 1e-3)
    harm = _Harmonics(x / rho_safe, y / rho_safe)
    radius = (1.0 + body.torso_field.on(harm)) / np.sqrt((harm.cos1 / rx) ** 2 + (harm.sin1 / ry) ** 2)
    depth = radius - rho
    fat_mm = body.fat_mm * np.clip(1.0 + body.fat_field.on(harm), 0.3, None)
    muscle_mm = body.muscle_mm * np.clip(1.0 + body.muscle_field.on(harm), 0.4, None)
    wall_mm = fat_mm + muscle_mm  # inner surface of the chest / abdominal wall muscles

    img = np.zeros_like(x)
    paint(img, _ramp(depth, pixel_mm), c["fat"])  # skin + subcutaneous fat
    paint(img, _ramp(depth - fat_mm, pixel_mm), c["muscle"])
    cavity = _ramp(depth - wall_mm, pixel_mm)
    paint(img, cavity, c["soft"])  # mediastinum / abdomen filler
    # Ribs: slanted hoops just inside the muscles (higher posteriorly), seen as ovals in the wall.
    phase = (z - 0.45 * y + body.rib_phase_mm) % body.rib_pitch_mm - 0.5 * body.rib_pitch_mm
    q_rib = (phase / 6.0) ** 2 + ((depth - wall_mm - 3.0) / 5.0) ** 2
    paint(img, _ramp((1.0 - q_rib) * 2.5, pixel_mm), c["muscle"] * 0.5)  # cortical bone: dark rim
    paint(img, _ramp((0.45 - q_rib) * 3.5, pixel_mm), c["marrow"] * 0.7)
    rib_cage = _ramp(depth - wall_mm - 11.0, pixel_mm)  # lungs and organs stay inside the ribs

    # Diaphragm: two domes (upper envelope); lungs above, abdomen below.
    cx_l, cx_r, cy_d = 0.45 * rx, -0.45 * rx, 0.05 * ry
    d2_l = (x - cx_l) ** 2 + (y - cy_d) ** 2
    d2_r = (x - cx_r) ** 2 + (y - cy_d) ** 2
    dome = np.maximum(body.dome_left_z_mm - d2_l / (2 * body.dome_radius_mm),
                      body.dome_right_z_mm - d2_r / (2 * body.dome_radius_mm))  # fmt: skip
    above = _ramp(0.8 * (z - dome), pixel_mm)
    below = 1.0 - above

    # Abdomen: liver on the right (left lobe reaching across anteriorly), stomach/bowel elsewhere.
    liver_edge = body.liver_left_edge_mm - 0.4 * (y + 0.5 * ry) - 0.004 * y * y  # recedes posteriorly
    liver = rib_cage * _ramp(0.8 * (dome - 6.0 - z), pixel_mm) * _ramp(liver_edge - x, pixel_mm)
    spine_y = ry - body.fat_mm - 30.0
    vr = body.vertebra_radius_mm
    vy = spine_y - vr - 12.0
    not_spine = 1.0 - cyl(0.0, vy + 10.0, 45.0, vr + 25.0)
    liver *= not_spine
    paint(img, liver, c["liver"])

    # Lungs: above the diaphragm, inside the ribs, lateral to the mediastinum, not at the spine.
    lung_l = _ramp(x - body.mediastinum_left_mm + 0.15 * y, pixel_mm)
    lung_r = _ramp(-body.mediastinum_right_mm - x - 0.1 * y, pixel_mm)
    lung = rib_cage * above * np.maximum(lung_l, lung_r) * not_spine
    paint(img, lung, c["lung"])
    mediastinum = cavity * above * (1.0 - lung)

    regions = {
        "liver": liver,
        "abdomen": cavity * below * (1.0 - liver),
        "mediastinum": mediastinum,
        "lung": lung,
    }
    for blob, js, is_ in blob_boxes:
        q = ((x[js, is_] - blob.centre[0]) / blob.radii_mm[0]) ** 2
        q += ((y[js, is_] - blob.centre[1]) / blob.radii_mm[1]) ** 2
        q += ((z[js, is_] - blob.centre[2]) / blob.radii_mm[2]) ** 2
        m = _ramp((1.0 - q) * 0.5 * float(blob.radii_mm[:2].min()), pixel_mm) * regions[blob.region][js, is_]
        sub = img[js, is_]
        sub += m * (c[blob.tissue] * blob.gain - sub)

    # Spine: back muscles, vertebral body (fatty marrow), spinal canal; descending aorta beside it.
    for side in (-1.0, 1.0):
        paint(img, cyl(side * 32.0, spine_y, 28.0, 24.0), c["muscle"])
    paint(img, cyl(0.0, vy, vr, vr * 0.85), c["marrow"])
    paint(img, cyl(0.0, vy + vr + 5.0, 7.0, 7.0), c["csf"])
    ar = body.aorta_radius_mm
    paint(img, cyl(vr + ar + 2.0, vy - 0.3 * vr, ar, ar), c["vessel"])
    ivc = cyl(-0.15 * rx, vy - vr - 15.0, 13.0, 11.0) * below
    paint(img, ivc, c["vessel"] * 0.8)
    return img


def _blob_boxes(
    body: _Body, p0: np.ndarray, e_i: np.ndarray, e_j: np.ndarray, e_k: np.ndarray, si: float, sj: float,
    size_ij: tuple[int, int],
) -> list[tuple[_Blob, slice, slice]]:  # fmt: skip
    """Blobs the slice plane through ``p0`` cuts, each with its pixel bounding box."""
    out = []
    ni, nj = size_ij
    for blob in body.blobs:
        d = blob.centre - p0
        rmax = float(blob.radii_mm.max())
        if abs(float(d @ e_k)) >= rmax:
            continue
        ci, cj = float(d @ e_i) / si, float(d @ e_j) / sj
        i0, i1 = max(0, int(ci - rmax / si) - 1), min(ni, int(ci + rmax / si) + 2)
        j0, j1 = max(0, int(cj - rmax / sj) - 1), min(nj, int(cj + rmax / sj) + 2)
        if i1 > i0 and j1 > j0:
            out.append((blob, slice(j0, j1), slice(i0, i1)))
    return out


# ----------------------------------------------------------------------------------------------
# Heart
# ----------------------------------------------------------------------------------------------
@dataclass
class _Heart:
    endo_radius_base_mm: float
    wall_mean_mm: float
    apex_wall_mm: float
    profile_power: float
    endo_length_mm: float  # mitral plane -> endocardial apex
    epi_length_mm: float  # mitral plane -> epicardial apex
    ellipticity: float
    ellipticity_angle: float
    shape_field: _AngularField
    wall_field: _AngularField
    septal_bonus_mm: float
    # RV
    rv_width_base_mm: float
    rv_length_mm: float
    rv_wall_mm: float
    rv_centre_frac: float  # RV ellipse centre at -frac * R_epi along a
    rv_insert_ant: float  # radians, anterior RV insertion point
    rv_insert_inf: float  # radians, inferior RV insertion point
    # Fat
    fat_max_mm: float
    fat_field: _AngularField
    # Papillary muscles: (theta, radius_mm, z_start_mm, z_end_mm, inset_frac)
    papillary: list[tuple[float, float, float, float, float]]
    trabeculae: list[tuple[float, float, float, float, float]]
    # Outflow tract at the base
    lvot_angle: float
    lvot_depth_mm: float
    aorta_root_radius_mm: float

    # -- radial profiles ----------------------------------------------------------------------
    def endo_profile(self, z: float) -> float:
        """Endocardial radius (before the angular shape) at depth z; 0 past the endocardial apex."""
        if z < 0:
            z = 0.0
        u = z / self.endo_length_mm
        r = self.endo_radius_base_mm * math.sqrt(max(0.0, 1.0 - u**self.profile_power)) if u < 1 else 0.0
        return r * self._base_taper(z)

    def _base_taper(self, z: float) -> float:
        # The cavity is widest a little below the mitral plane, not at it.
        z_eq = 0.2 * self.epi_length_mm
        return 1.0 - 0.08 * max(0.0, (z_eq - z) / z_eq) ** 2

    def wall_profile(self, z: float) -> float:
        """Mean wall thickness at depth z: thins towards the apex (to ``apex_wall_mm``)."""
        u = min(max(z, 0.0) / self.endo_length_mm, 1.0)
        return self.wall_mean_mm + (self.apex_wall_mm - self.wall_mean_mm) * u * u

    def epi_profile(self, z: float) -> float:
        """Epicardial radius: the cavity plus the wall; past the cavity a rounded apical cap."""
        if z < 0:
            z = 0.0
        if z < self.endo_length_mm:
            return self.endo_profile(z) + self.wall_profile(z)
        dz = z - self.endo_length_mm
        return math.sqrt(max(0.0, self.apex_wall_mm**2 - dz * dz))


def _sample_heart(rng: np.random.Generator, acq: _Acquisition) -> _Heart:
    sk = acq.spacing_mm[2]
    z_last = acq.first_slice_z_mm + sk * (acq.n_slices - 1)
    # The epicardial apex lies a little beyond the last slice centre (sometimes within its
    # thickness), so the apical slice shows a small cavity or, past the endocardial apex, none.
    epi_length = float(np.clip(z_last + _uniform(rng, 2.0, 14.0), 60.0, 125.0))
    wall_mean = _uniform(rng, 7.5, 10.5)
    apex_wall = wall_mean * _uniform(rng, 0.6, 0.85)  # the apex is thinner than the mid wall
    papillary = []
    for centre_deg in (45.0, -115.0):  # anterolateral and posteromedial papillary muscles
        theta = math.radians(centre_deg + _uniform(rng, -15, 15))
        heads = 1 if rng.random() < 0.6 else 2  # sometimes bifid
        for h in range(heads):
            papillary.append(
                (
                    theta + (h - (heads - 1) / 2) * math.radians(_uniform(rng, 14, 22)),
                    _uniform(rng, 3.5, 6.0) / (1.0 + 0.3 * (heads - 1)),
                    _uniform(rng, 0.12, 0.3) * epi_length,
                    _uniform(rng, 0.65, 0.8) * epi_length,
                    _uniform(rng, 0.5, 1.0),
                )
            )
    trabeculae = []
    for _ in range(int(rng.integers(5, 12))):
        z0 = _uniform(rng, 0.1, 0.8) * epi_length
        trabeculae.append(
            (
                _uniform(rng, -np.pi, np.pi),
                _uniform(rng, 1.0, 2.2),
                z0,
                z0 + _uniform(rng, 10, 35),
                _uniform(rng, -0.3, 1.2),
            )
        )
    return _Heart(
        endo_radius_base_mm=_uniform(rng, 20.0, 28.0),
        wall_mean_mm=wall_mean,
        apex_wall_mm=apex_wall,
        profile_power=_uniform(rng, 2.0, 3.0),
        endo_length_mm=epi_length - apex_wall,
        epi_length_mm=epi_length,
        ellipticity=_uniform(rng, 0.0, 0.07),
        ellipticity_angle=_uniform(rng, 0, np.pi),
        shape_field=_AngularField(rng, (3, 4, 5), 0.025),
        wall_field=_AngularField(rng, (1, 2, 3, 4), 0.09),
        septal_bonus_mm=_uniform(rng, 0.5, 2.0),
        rv_width_base_mm=_uniform(rng, 22.0, 36.0),
        rv_length_mm=_uniform(rng, 0.8, 0.95) * epi_length,
        rv_wall_mm=_uniform(rng, 2.5, 4.0),
        rv_centre_frac=_uniform(rng, 0.35, 0.6),
        rv_insert_ant=math.radians(_uniform(rng, 95.0, 125.0)),
        rv_insert_inf=math.radians(_uniform(rng, -135.0, -110.0)),
        fat_max_mm=_uniform(rng, 2.0, 6.0),
        fat_field=_AngularField(rng, (1, 2, 3, 5), 1.0),
        papillary=papillary,
        trabeculae=trabeculae,
        lvot_angle=math.radians(_uniform(rng, 125.0, 150.0)),
        lvot_depth_mm=_uniform(rng, 4.0, 16.0),
        aorta_root_radius_mm=_uniform(rng, 10.0, 14.0),
    )


@dataclass
class _Infarct:
    territory: str
    centre: float  # radians
    twist_per_mm: float  # the territory centre turns slowly with z
    half_width: float  # radians, at mid-infarct
    half_width_apex: float  # radians, at the apex (LAD apical infarcts wrap around)
    edge_width: float  # radians over which transmurality falls to 0 at the lateral edges
    z_start_mm: float
    z_end_mm: float
    z_ramp_mm: float
    transmurality: float  # peak fraction of the wall, from the endocardium
    wavefront: _AngularField  # irregular epicardial front of the scar
    edge_field: _AngularField  # irregular lateral borders
    brightness_field: _AngularField
    has_mvo: bool
    mvo_half_width: float
    mvo_depth_frac: float  # MVO spans this fraction of the local scar thickness
    mvo_offset_mm: float  # gap between the endocardium and the MVO (a thin scar rim)
    mvo_z_start_mm: float
    mvo_z_end_mm: float


def _sample_infarct(rng: np.random.Generator, heart: _Heart, acq: _Acquisition) -> _Infarct:
    territory = TERRITORIES[int(rng.choice(3, p=[0.45, 0.25, 0.30]))]
    length = heart.epi_length_mm
    sk = acq.spacing_mm[2]
    # AHA mid-ventricular segments in this frame: anterior 60-120 deg, anteroseptal 120-180,
    # inferoseptal -180..-120, inferior -120..-60, inferolateral -60..0, anterolateral 0-60.
    if territory == "LAD":  # anterior + anteroseptal, down to the apex
        centre = _uniform(rng, 100.0, 135.0)
        half_width = _uniform(rng, 45.0, 85.0)
        half_width_apex = _uniform(rng, 100.0, 180.0)
        z_start = _uniform(rng, 0.05, 0.5) * length
        z_end = length + 5.0 if rng.random() < 0.85 else z_start + _uniform(rng, 25.0, 50.0)
    else:
        centre = _uniform(rng, -25.0, 15.0) if territory == "LCX" else _uniform(rng, -135.0, -100.0)
        half_width = _uniform(rng, 40.0, 75.0)
        half_width_apex = half_width
        z_start = _uniform(rng, 0.0, 0.3) * length
        z_end = min(z_start + _uniform(rng, 40.0, 85.0), 0.92 * length)
    # At least about two slices deep so the infarct always shows on the final grid.
    z_end = max(z_end, z_start + 1.6 * sk)
    transmural = rng.random() < 0.45
    transmurality = _uniform(rng, 0.9, 1.0) if transmural else _uniform(rng, 0.35, 0.88)
    has_mvo = transmurality >= 0.55 and rng.random() < 0.65
    mz0, mz1 = z_start + 0.2 * (z_end - z_start), z_start + 0.8 * (z_end - z_start)
    return _Infarct(
        territory=territory,
        centre=math.radians(centre),
        twist_per_mm=math.radians(_uniform(rng, -0.4, 0.4)),
        half_width=math.radians(half_width),
        half_width_apex=math.radians(half_width_apex),
        edge_width=math.radians(_uniform(rng, 10.0, 25.0)),
        z_start_mm=z_start,
        z_end_mm=z_end,
        z_ramp_mm=_uniform(rng, 4.0, 12.0),
        transmurality=transmurality,
        wavefront=_AngularField(rng, (3, 4, 5, 6, 7, 9, 11), 0.35),
        edge_field=_AngularField(rng, (2, 3, 4, 5), 0.25),
        brightness_field=_AngularField(rng, (2, 3, 5, 7), 0.25),
        has_mvo=has_mvo,
        mvo_half_width=_uniform(rng, 0.3, 0.6) * math.radians(half_width),
        mvo_depth_frac=_uniform(rng, 0.35, 0.65),
        mvo_offset_mm=0.0 if rng.random() < 0.5 else _uniform(rng, 0.3, 1.2),
        mvo_z_start_mm=mz0,
        mvo_z_end_mm=max(mz1, mz0 + 1.2 * sk),
    )


@dataclass
class _SliceAngles:
    """Per-slice functions of the LV-frame angle, evaluated once and reused by every sub-slice."""

    shape: np.ndarray
    wall_delta_mm: np.ndarray
    lvot_bump: np.ndarray
    fat_mm: np.ndarray
    scar_delta: np.ndarray | None = None  # |theta - infarct centre| minus the edge irregularity
    scar_wave: np.ndarray | None = None
    scar_bright: np.ndarray | None = None


def _slice_angles(
    heart: _Heart, infarct: _Infarct | None, theta: np.ndarray, harm: _Harmonics, z_mm: float
) -> _SliceAngles:
    c2, s2 = harm.get(2)
    phi = 2 * heart.ellipticity_angle
    shape = 1.0 + heart.ellipticity * (c2 * math.cos(phi) + s2 * math.sin(phi)) + heart.shape_field.on(harm)
    # Wall thickness: mean + smooth regional variation + thicker septum (theta = 180 deg).
    septal = np.clip(-harm.cos1, 0, None) ** 2
    wall_delta = heart.wall_mean_mm * heart.wall_field.on(harm) + heart.septal_bonus_mm * septal
    lvot_bump = harm.bump(heart.lvot_angle, 0.45)
    # Epicardial fat: patchy (smooth random field thresholded), more in the interventricular grooves.
    grooves = harm.bump(heart.rv_insert_ant, 0.3) + harm.bump(heart.rv_insert_inf, 0.3)
    fat = heart.fat_max_mm * (np.clip(heart.fat_field.on(harm) + 0.1, 0, None) / 0.8 + 0.8 * grooves)
    out = _SliceAngles(shape=shape, wall_delta_mm=wall_delta, lvot_bump=lvot_bump, fat_mm=fat)
    if infarct is not None:
        centre = infarct.centre + infarct.twist_per_mm * z_mm
        delta = np.abs(_wrap(theta - centre))
        out.scar_delta = delta - infarct.edge_field.on(harm)
        out.scar_wave = infarct.wavefront.on(harm)
        out.scar_bright = infarct.brightness_field.on(harm)
    return out


def _paint_heart(
    heart: _Heart,
    infarct: _Infarct | None,
    ang: _SliceAngles,
    a: np.ndarray,
    b: np.ndarray,
    r: np.ndarray,
    theta: np.ndarray,
    z: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Tissue codes and a scar brightness factor on one fine sub-slice at depth ``z`` (mm)."""
    codes = np.zeros(r.shape, dtype=np.uint8)
    bright = np.ones(r.shape, dtype=np.float32)
    r_endo0 = heart.endo_profile(z)
    r_epi0 = heart.epi_profile(z)
    if r_epi0 <= 0.0:
        return codes, bright
    above_base = z < 0.0  # the sub-slice cuts the atrium / valve plane: blood, no LV wall
    scale = r_endo0 / heart.endo_radius_base_mm
    # LVOT: the anteroseptal wall is thinner where it meets the aortic root (basal slices only).
    lvot = max(0.0, 1.0 - z / heart.lvot_depth_mm) if heart.lvot_depth_mm > 0 else 0.0
    endo = r_endo0 * ang.shape
    wall_delta = ang.wall_delta_mm * scale - lvot * 0.45 * heart.wall_mean_mm * ang.lvot_bump
    epi = np.maximum(r_epi0 * ang.shape + wall_delta, endo + 4.0 * min(1.0, scale + 0.5))
    lv_epi = r < epi
    lv_cavity = r < endo

    # RV: an ellipse centred on the septal side, meeting the LV epicardium at the two insertion
    # points (upper and lower halves have their own height), only outside the LV.
    rv_w = heart.rv_width_base_mm * math.sqrt(max(0.0, 1.0 - (max(z, 0.0) / heart.rv_length_mm) ** 2))
    rv_outer = np.zeros(r.shape, dtype=bool)
    rv_blood = np.zeros(r.shape, dtype=bool)
    rv_dist = None
    if rv_w > 2.0:
        rr = r_epi0
        ac = -heart.rv_centre_frac * rr
        ax = rr + rv_w + heart.rv_wall_mm + ac
        heights = []
        for ins in (heart.rv_insert_ant, heart.rv_insert_inf):
            u = (rr * math.cos(ins) - ac) / ax
            heights.append(abs(rr * math.sin(ins)) / math.sqrt(max(1e-3, 1.0 - min(u * u, 0.95))))
        h = np.where(b >= 0, heights[0], heights[1]).astype(np.float32)
        tip = max(rr * math.cos(heart.rv_insert_ant), rr * math.cos(heart.rv_insert_inf)) + 2.0
        q_out = ((a - ac) / ax) ** 2 + (b / h) ** 2
        q_in = ((a - ac) / (ax - heart.rv_wall_mm)) ** 2 + (b / np.maximum(h - heart.rv_wall_mm, 1.0)) ** 2
        rv_outer = (q_out < 1.0) & (a < tip) & ~lv_epi
        rv_blood = (q_in < 1.0) & rv_outer
        rv_dist = (np.sqrt(q_out) - 1.0) * h

    # Epicardial fat outside the LV and RV, patchy, thicker in the AV and interventricular grooves.
    fat_mm = ang.fat_mm * (1.0 + 0.6 * max(0.0, 1.0 - z / 20.0))
    d_lv = r - epi
    fat = (d_lv < fat_mm) & ~lv_epi
    if rv_dist is not None:
        # Along the RV free wall the fat is thinner and patchier (the AV groove excepted).
        rv_fat_mm = np.clip(ang.fat_mm - 0.5 * heart.fat_max_mm, 0.0, None)
        fat |= (rv_dist < rv_fat_mm) & (rv_dist > 0) & (a < 0.3 * r_epi0)
    codes[fat] = _T_FAT
    codes[rv_outer] = _T_RV_WALL
    codes[rv_blood] = _T_RV_BLOOD

    if above_base:
        codes[lv_epi] = _T_GREAT_VESSEL  # left atrium / mitral inflow: blood, not LV
        return codes, bright

    codes[lv_epi] = _T_LV_MYO
    codes[lv_cavity] = _T_LV_BLOOD
    # Papillary muscles and trabeculae: dark blobs in the cavity, labelled blood pool.
    if r_endo0 > 6.0:
        for th, rad, z0, z1, inset in heart.papillary + heart.trabeculae:
            if not z0 <= z <= z1:
                continue
            taper = math.sin(math.pi * (z - z0) / (z1 - z0)) ** 0.5
            rad_z = rad * (0.6 + 0.4 * taper)
            e_th = r_endo0 * float(1.0 + heart.ellipticity * math.cos(2 * (th - heart.ellipticity_angle)))
            dist = e_th - inset * rad_z
            ca, cb = dist * math.cos(th), dist * math.sin(th)
            blob = ((a - ca) ** 2 + (b - cb) ** 2 < rad_z * rad_z) & lv_cavity
            codes[blob] = _T_PAPILLARY

    if infarct is not None:
        z_lo, z_hi = infarct.z_start_mm - infarct.z_ramp_mm, infarct.z_end_mm + infarct.z_ramp_mm
        if z_lo < z < z_hi:
            _paint_infarct(infarct, heart, ang, codes, bright, r, endo, epi, z)

    # Aortic root next to the anteroseptal wall in the most basal millimetres.
    if z < heart.lvot_depth_mm:
        d = r_epi0 + heart.aorta_root_radius_mm * 0.55
        ca, cb = d * math.cos(heart.lvot_angle), d * math.sin(heart.lvot_angle)
        rad = heart.aorta_root_radius_mm * (0.7 + 0.3 * (1.0 - z / heart.lvot_depth_mm))
        root = ((a - ca) ** 2 + (b - cb) ** 2 < rad * rad) & ~lv_epi
        codes[root] = _T_GREAT_VESSEL
    return codes, bright


def _paint_infarct(
    inf: _Infarct,
    heart: _Heart,
    ang: _SliceAngles,
    codes: np.ndarray,
    bright: np.ndarray,
    r: np.ndarray,
    endo: np.ndarray,
    epi: np.ndarray,
    z: float,
) -> None:
    assert ang.scar_delta is not None and ang.scar_wave is not None and ang.scar_bright is not None
    # Extent along the long axis (soft ramps) and angular half width (wider towards the apex for LAD).
    z_weight = float(
        _smoothstep((z - inf.z_start_mm + inf.z_ramp_mm) / (2 * inf.z_ramp_mm))
        * _smoothstep((inf.z_end_mm + inf.z_ramp_mm - z) / (2 * inf.z_ramp_mm))
    )
    if z_weight <= 0:
        return
    apex_t = float(_smoothstep((z - 0.5 * heart.epi_length_mm) / (0.5 * heart.epi_length_mm)))
    half_width = inf.half_width + (inf.half_width_apex - inf.half_width) * apex_t
    lateral = _smoothstep((half_width - ang.scar_delta) / inf.edge_width)
    # Transmurality: fraction of the wall from the endocardium; falls off at the lateral edges (a
    # wavefront), with an irregular epicardial border from the angular wavefront field.
    tau = np.clip(inf.transmurality * (1.0 + ang.scar_wave) * lateral * z_weight, 0.0, 1.0)
    tau = np.where(tau > 0.97, 1.0, tau)  # transmural stays transmural
    wall = epi - endo
    depth = r - endo  # < 0 in the cavity; at the apex cap endo = 0 so depth is from the centre
    myo = codes == _T_LV_MYO
    scar = myo & (depth < tau * wall)
    if not scar.any():
        return
    codes[scar] = _T_SCAR
    # Border zone: thinner parts of the scar a little less bright; plus a slow angular variation.
    b = 0.82 + 0.18 * np.clip(tau / max(inf.transmurality, 1e-3), 0, 1) + 0.08 * ang.scar_bright
    bright[scar] = b[scar]
    if inf.has_mvo and inf.mvo_z_start_mm <= z <= inf.mvo_z_end_mm and heart.endo_profile(z) > 4.0:
        core = _smoothstep((inf.mvo_half_width - ang.scar_delta) / (0.5 * inf.edge_width))
        mvo_thick = inf.mvo_depth_frac * tau * wall * core
        mvo = scar & (depth >= inf.mvo_offset_mm) & (depth < inf.mvo_offset_mm + mvo_thick)
        mvo &= tau > 0.5 * inf.transmurality
        codes[mvo] = _T_MVO


# ----------------------------------------------------------------------------------------------
# Contrast
# ----------------------------------------------------------------------------------------------
def _sample_contrast(rng: np.random.Generator, randomize: bool) -> dict[str, float]:
    """Relative LGE signal of each tissue (scar ~ 1). Magnitude inversion-recovery by default."""
    u = lambda lo, hi: _uniform(rng, lo, hi)  # noqa: E731
    if not randomize:
        c = {
            "scar": u(0.95, 1.1),
            "blood": u(0.42, 0.62),
            "myo": u(0.015, 0.05),  # nulled
            "mvo": u(0.04, 0.1),
            "fat": u(0.7, 1.0),
            "muscle": u(0.15, 0.28),
            "liver": u(0.22, 0.36),
            "soft": u(0.1, 0.2),
            "lung": u(0.03, 0.07),
            "marrow": u(0.35, 0.55),
            "csf": u(0.08, 0.18),
            "stomach": u(0.12, 0.3),
        }
        c["vessel"] = c["blood"] * u(0.9, 1.1)
        return c
    # Domain randomisation: keep the orderings that make LGE what it is (healthy myocardium below
    # blood, blood not above scar, MVO dark), everything else free.
    scar = 1.0
    blood = u(0.3, 0.97)
    myo = u(0.0, 0.35) * blood
    return {
        "scar": scar,
        "blood": blood,
        "myo": myo,
        "mvo": u(0.0, 1.0) * (myo + 0.1),
        "fat": u(0.35, 1.3),
        "muscle": u(0.05, 0.5),
        "liver": u(0.1, 0.65),
        "soft": u(0.1, 0.6),
        "lung": u(0.0, 0.12),
        "marrow": u(0.2, 0.8),
        "csf": u(0.0, 0.4),
        "stomach": u(0.05, 0.6),
        "vessel": blood * u(0.7, 1.2),
    }


# ----------------------------------------------------------------------------------------------
# Main entry point
# ----------------------------------------------------------------------------------------------
def make_phantom(
    seed: int,
    *,
    infarct: bool | None = None,
    n_slices: int | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
    randomize_appearance: bool = False,
) -> Phantom:
    """Make one synthetic short-axis LGE stack with its exact labelmap.

    Args:
        seed: all randomness comes from ``np.random.default_rng(seed)``; the same seed and
            arguments give bit-identical arrays, geometry and info.
        infarct: True / False forces an infarct or none; None draws one with probability 0.75.
        n_slices: number of slices (default: 6-14, chosen so the stack covers the LV).
        spacing_mm: (i, j, k) spacing; k is the centre-to-centre slice distance (the slice
            thickness is drawn at or below it). Default: 1.2-2.0 mm in-plane, 6-10 mm thick slices
            with 0-4 mm gaps.
        randomize_appearance: widen tissue contrast, SNR, bias, blur and ghosting (and sometimes
            use a PSIR-like offset display or black padding) for domain-randomised training.

    Returns:
        A :class:`Phantom`: float32 image (>= 0), uint8 labelmap (0-4, see ``scarnet.labels``)
        on the same oblique grid, and a JSON-serialisable ``info`` dict describing the case.
    """
    # Independent streams per component (all from this one seed): the same seed gives the same
    # anatomy whether or not an infarct is asked for, and the same labels with or without
    # randomize_appearance (only the contrast and acquisition streams differ then).
    streams = np.random.default_rng(seed).integers(0, 2**63 - 1, size=8)
    rng_acq, rng_body, rng_frame, rng_heart, rng_contrast, rng_coil, rng_infarct, rng_noise = (
        np.random.default_rng(int(s)) for s in streams
    )
    acq = _sample_acquisition(rng_acq, n_slices, spacing_mm)
    body = _sample_body(rng_body)
    frame = _sample_frame(rng_frame, acq, body)
    heart = _sample_heart(rng_heart, acq)
    contrast = _sample_contrast(rng_contrast, randomize_appearance)
    coil = _sample_coils(rng_coil, body, frame)
    draw = rng_infarct.random()
    want_infarct = bool(draw < 0.75) if infarct is None else bool(infarct)

    inf: _Infarct | None = None
    signal = labels = bias = None
    # A drawn infarct may (rarely) vanish on the final grid; redraw it so infarct=True keeps its promise.
    for _attempt in range(8):
        inf = _sample_infarct(rng_infarct, heart, acq) if want_infarct else None
        signal, labels, bias = _render(acq, body, frame, heart, inf, contrast, coil)
        if inf is None or (labels == SCAR).any():
            break
    assert signal is not None and labels is not None

    image, acq_info = _acquire(signal, bias, contrast, acq, rng_noise, randomize_appearance)

    direction = frame.direction
    origin = frame.origin_body + frame.table_offset
    spacing = acq.spacing_mm
    image_vol = Volume(image, spacing, tuple(origin), direction)
    label_vol = Volume(labels, spacing, tuple(origin), direction.copy())
    voxel_ml = image_vol.voxel_volume_ml
    has_scar = bool((labels == SCAR).any() or (labels == MVO).any())
    info: dict[str, Any] = {
        "seed": int(seed),
        "generator": "scarnet.phantom v1",
        "randomize_appearance": bool(randomize_appearance),
        "infarct": has_scar,
        "territory": inf.territory if (inf is not None and has_scar) else None,
        "transmurality": inf.transmurality if (inf is not None and has_scar) else 0.0,
        "has_mvo": bool((labels == MVO).any()),
        "infarct_z_range_mm": [inf.z_start_mm, inf.z_end_mm] if inf is not None else None,
        "n_slices": acq.n_slices,
        "spacing": list(spacing),
        "size_ijk": list(image_vol.shape_ijk),
        "slice_thickness_mm": acq.thickness_mm,
        "slice_gap_mm": spacing[2] - acq.thickness_mm,
        "fov_mm": [acq.size_ij[0] * spacing[0], acq.size_ij[1] * spacing[1]],
        "phase_axis": acq.phase_axis,
        "slice_order": "base_to_apex" if acq.base_to_apex else "apex_to_base",
        "slice_z_below_mitral_plane_mm": frame.z_of_slice,
        "inplane_rotation_deg": acq.rotation_deg,
        # LV frame in the image's LPS space: long axis base -> apex, and the in-plane directions
        # towards the lateral (theta = 0) and anterior (theta = 90 deg) walls.
        "lv_frame_lps": {
            "long_axis": frame.long_axis,
            "lateral": frame.lateral,
            "anterior": frame.anterior,
            "base_centre_mm": frame.base_centre + frame.table_offset,
        },
        "lv": {
            "endo_radius_base_mm": heart.endo_radius_base_mm,
            "wall_thickness_mm": heart.wall_mean_mm,
            "septal_extra_mm": heart.septal_bonus_mm,
            "length_mm": heart.epi_length_mm,
            # Where the RV wall meets the septum, as theta in the LV frame (90 deg anterior, 180 septum).
            "rv_insertion_anterior_deg": math.degrees(heart.rv_insert_ant),
            "rv_insertion_inferior_deg": math.degrees(heart.rv_insert_inf),
        },
        "scar_percent_of_myocardium": 100.0
        * float(np.isin(labels, (SCAR, MVO)).sum())
        / max(1.0, float(np.isin(labels, (HEALTHY_MYOCARDIUM, SCAR, MVO)).sum())),
        "volumes_ml": {
            "lv_blood_pool": float((labels == LV_BLOOD_POOL).sum() * voxel_ml),
            "myocardium": float(np.isin(labels, (HEALTHY_MYOCARDIUM, SCAR, MVO)).sum() * voxel_ml),
            "scar_incl_mvo": float(np.isin(labels, (SCAR, MVO)).sum() * voxel_ml),
            "mvo": float((labels == MVO).sum() * voxel_ml),
        },
        "contrast": contrast,
        "acquisition": acq_info,
    }
    return Phantom(image=image_vol, labelmap=label_vol, info=_jsonable(info))


def anterior_rv_insertion_lps(phantom: Phantom) -> np.ndarray:
    """The phantom's anterior RV insertion point (LPS mm): on the middle slice with LV, the epicardium in
    the insertion's direction from the LV centre. What a reader would mark for the AHA segments."""
    return _rv_insertion_lps(phantom, "rv_insertion_anterior_deg")


def inferior_rv_insertion_lps(phantom: Phantom) -> np.ndarray:
    """The phantom's inferior RV insertion point (LPS mm), found as :func:`anterior_rv_insertion_lps`;
    with it, the AHA segments' septum is the phantom's own."""
    return _rv_insertion_lps(phantom, "rv_insertion_inferior_deg")


def _rv_insertion_lps(phantom: Phantom, angle_key: str) -> np.ndarray:
    frame = phantom.info["lv_frame_lps"]
    theta = math.radians(phantom.info["lv"][angle_key])
    towards = math.cos(theta) * np.asarray(frame["lateral"]) + math.sin(theta) * np.asarray(frame["anterior"])
    return outermost_wall_point_lps(phantom.labelmap, towards)


def _render(
    acq: _Acquisition,
    body: _Body,
    frame: _Frame,
    heart: _Heart,
    inf: _Infarct | None,
    contrast: dict[str, float],
    coil: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free signal, labels and the coil bias field, all (k, j, i)."""
    ni, nj = acq.size_ij
    si, sj, sk = acq.spacing_mm
    f = _SUPERSAMPLE
    e_i, e_j, e_k = frame.direction[:, 0], frame.direction[:, 1], frame.direction[:, 2]
    pixel_mm = 0.5 * (si + sj)
    signal = np.zeros((acq.n_slices, nj, ni), dtype=np.float32)
    labels = np.zeros((acq.n_slices, nj, ni), dtype=np.uint8)
    bias = np.zeros((acq.n_slices, nj, ni), dtype=np.float32)
    lut = np.zeros(_N_CODES, dtype=np.float32)
    lut[_T_FAT] = contrast["fat"]
    lut[_T_RV_BLOOD] = lut[_T_LV_BLOOD] = contrast["blood"]
    lut[_T_GREAT_VESSEL] = contrast["vessel"]
    lut[_T_RV_WALL] = lut[_T_LV_MYO] = lut[_T_PAPILLARY] = contrast["myo"]
    lut[_T_SCAR] = contrast["scar"]
    lut[_T_MVO] = contrast["mvo"]
    sub_offsets = (np.arange(_SUB_SLICES) + 0.5) / _SUB_SLICES - 0.5  # in units of the thickness
    heart_half_mm = heart.endo_radius_base_mm + heart.wall_mean_mm + heart.rv_width_base_mm + 22.0
    ii = np.arange(ni, dtype=np.float32)
    jj = np.arange(nj, dtype=np.float32)[:, None]

    for k in range(acq.n_slices):
        p0 = frame.origin_body + k * sk * e_k
        x = (p0[0] + ii * (si * e_i[0]) + jj * (sj * e_j[0])).astype(np.float32)
        y = (p0[1] + ii * (si * e_i[1]) + jj * (sj * e_j[1])).astype(np.float32)
        zb = (p0[2] + ii * (si * e_i[2]) + jj * (sj * e_j[2])).astype(np.float32)
        boxes = _blob_boxes(body, p0, e_i, e_j, e_k, si, sj, acq.size_ij)
        torso = _render_body(body, contrast, x, y, zb, pixel_mm, boxes)
        bias[k] = coil(x, y, zb)

        # Heart region of interest, rendered on a finer grid and through the slice thickness.
        z_k = float(frame.z_of_slice[k])
        c = frame.lv_centre(z_k)
        ci = float((c - p0) @ e_i) / si
        cj = float((c - p0) @ e_j) / sj
        i0, i1 = max(0, int(ci - heart_half_mm / si)), min(ni, int(ci + heart_half_mm / si) + 2)
        j0, j1 = max(0, int(cj - heart_half_mm / sj)), min(nj, int(cj + heart_half_mm / sj) + 2)
        if i1 <= i0 or j1 <= j0:
            signal[k] = torso
            continue
        fi = (i0 + (np.arange((i1 - i0) * f, dtype=np.float32) + 0.5) / f - 0.5)[None, :]
        fj = (j0 + (np.arange((j1 - j0) * f, dtype=np.float32) + 0.5) / f - 0.5)[:, None]
        # (a, b) of the fine pixels: e_i, e_j are orthogonal to L, so the same for every sub-slice.
        d0 = p0 - c
        lat, ant = frame.lateral, frame.anterior
        a = (d0 @ lat + fi * (si * e_i @ lat) + fj * (sj * e_j @ lat)).astype(np.float32)
        b = (d0 @ ant + fi * (si * e_i @ ant) + fj * (sj * e_j @ ant)).astype(np.float32)
        r = np.hypot(a, b)
        theta = np.arctan2(b, a)
        r_safe = np.maximum(r, 1e-3)
        harm = _Harmonics(a / r_safe, b / r_safe)
        ang = _slice_angles(heart, inf, theta, harm, z_k)
        torso_roi = torso[j0:j1, i0:i1]
        torso_fine = np.repeat(np.repeat(torso_roi, f, axis=0), f, axis=1)
        acc = np.zeros_like(torso_fine)
        counts = np.zeros((4,) + torso_fine.shape, dtype=np.float32)  # blood, myo(2|3|4), scar(3|4), mvo
        for off in sub_offsets:
            codes, bright = _paint_heart(heart, inf, ang, a, b, r, theta, z_k + off * acq.thickness_mm)
            value = np.where(codes == _T_NONE, torso_fine, lut[codes])
            value = np.where(codes == _T_SCAR, value * bright, value)
            acc += value
            lab = _CODE_LABEL[codes]
            counts[0] += lab == LV_BLOOD_POOL
            counts[1] += lab >= HEALTHY_MYOCARDIUM
            counts[2] += lab >= SCAR
            counts[3] += lab == MVO
        h, w = j1 - j0, i1 - i0
        roi_signal = acc.reshape(h, f, w, f).mean(axis=(1, 3)) / _SUB_SLICES
        frac = counts.reshape(4, h, f, w, f).mean(axis=(2, 4)) / _SUB_SLICES
        sl = torso.copy()
        sl[j0:j1, i0:i1] = roi_signal
        signal[k] = sl
        labels[k, j0:j1, i0:i1] = _majority_labels(frac)
    for k in range(acq.n_slices):
        labels[k] = _clean_slice_labels(labels[k])
    return signal, labels, bias


def _majority_labels(frac: np.ndarray) -> np.ndarray:
    """Nested majority vote on sub-sample fractions, so scar lies in myocardium and MVO in scar.

    First background vs blood pool vs whole myocardium; then, inside myocardium, scar when most of
    the myocardial sub-samples are scar; then MVO when most of the scar sub-samples are MVO.
    """
    f_blood, f_myo, f_scar, f_mvo = frac
    f_bg = 1.0 - f_blood - f_myo
    out = np.zeros(f_blood.shape, dtype=np.uint8)
    is_myo = (f_myo >= f_blood) & (f_myo >= f_bg) & (f_myo > 0)
    is_blood = ~is_myo & (f_blood >= f_bg) & (f_blood > 0)
    out[is_blood] = LV_BLOOD_POOL
    out[is_myo] = HEALTHY_MYOCARDIUM
    is_scar = is_myo & (f_scar > 0.5 * f_myo)
    out[is_scar] = SCAR
    out[is_scar & (f_mvo > 0.5 * f_scar)] = MVO
    return out


_CROSS = ndimage.generate_binary_structure(2, 1)
_SQUARE = ndimage.generate_binary_structure(2, 2)


def _clean_slice_labels(lab: np.ndarray) -> np.ndarray:
    """Enforce the label invariants on one slice (rarely changes more than a few voxels).

    One LV (the largest 8-connected piece), the blood pool never touching background (it is
    enclosed by myocardium), and every MVO piece touching scar.
    """
    lv = lab > 0
    if not lv.any():
        return lab
    comp, n = ndimage.label(lv, structure=_SQUARE)
    if n > 1:
        sizes = ndimage.sum_labels(lv, comp, index=np.arange(1, n + 1))
        lab = np.where(comp == 1 + int(np.argmax(sizes)), lab, BACKGROUND).astype(np.uint8)
    bg = lab == BACKGROUND
    leak = (lab == LV_BLOOD_POOL) & ndimage.binary_dilation(bg, structure=_CROSS)
    lab[leak] = HEALTHY_MYOCARDIUM
    mvo = lab == MVO
    if mvo.any():
        comp, n = ndimage.label(mvo, structure=_SQUARE)
        near_scar = ndimage.binary_dilation(lab == SCAR, structure=_SQUARE)
        touching = np.unique(comp[near_scar & mvo])
        lonely = mvo & ~np.isin(comp, touching)
        lab[lonely] = SCAR
    return lab


# ----------------------------------------------------------------------------------------------
# Acquisition effects
# ----------------------------------------------------------------------------------------------
def _sample_coils(
    rng: np.random.Generator, body: _Body, frame: _Frame
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A smooth receive-coil sensitivity: anterior and posterior surface-coil elements.

    Returns a function of body coordinates, normalised to 1 at the mid-ventricular LV centre.
    """
    centre = frame.lv_centre(float(np.mean(frame.z_of_slice)))
    elements = []
    for side in (-1.0, 1.0):  # anterior (y < 0) and posterior (y > 0) arrays
        for lr in (-1.0, 1.0):
            ex = lr * _uniform(rng, 30.0, 90.0) + _uniform(rng, -20, 20)
            ey = side * (body.ry_mm + _uniform(rng, 5.0, 30.0))
            ez = centre[2] + _uniform(rng, -60.0, 60.0)
            weight = _uniform(rng, 0.5, 1.5) * (1.0 if side < 0 else _uniform(rng, 0.4, 1.2))
            elements.append((ex, ey, ez, weight))
    falloff_mm = _uniform(rng, 90.0, 180.0)

    def sensitivity(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        total = np.full(np.shape(x), 0.05, dtype=np.float32)
        for ex, ey, ez, w in elements:
            d2 = (x - ex) ** 2 + (y - ey) ** 2 + (z - ez) ** 2
            total += w / (1.0 + d2 / falloff_mm**2)
        return total

    ref = float(sensitivity(np.array([centre[0]]), np.array([centre[1]]), np.array([centre[2]]))[0])
    return lambda x, y, z: sensitivity(x, y, z) / ref


def _linear_weights(n_small: int, n_out: int, cell_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Left control point and weight of the right one, for linear interpolation onto n_out pixels."""
    pos = (np.arange(n_out) + cell_px) / cell_px  # output pixel in control-point units (1 cell margin)
    lo = np.clip(np.floor(pos).astype(int), 0, n_small - 2)
    return lo, (pos - lo).astype(np.float32)


def _smooth_texture(rng: np.random.Generator, shape: tuple[int, int, int], cell_px: int) -> np.ndarray:
    """Zero-mean smooth random field (unit-ish std) for tissue heterogeneity, one per slice.

    Smoothed white noise on a coarse grid (one control point every ``cell_px`` pixels), linearly
    interpolated with gathers (cheaper than ndimage.zoom, and no multi-threaded BLAS).
    """
    n, h, w = shape
    small = rng.standard_normal((n, h // cell_px + 3, w // cell_px + 3)).astype(np.float32)
    small = ndimage.gaussian_filter(small, sigma=(0, 0.8, 0.8))
    small /= max(float(small.std()), 1e-6)
    lo_j, f_j = _linear_weights(small.shape[1], h, cell_px)
    lo_i, f_i = _linear_weights(small.shape[2], w, cell_px)
    rows = small[:, lo_j, :] * (1.0 - f_j)[:, None] + small[:, lo_j + 1, :] * f_j[:, None]
    return rows[:, :, lo_i] * (1.0 - f_i) + rows[:, :, lo_i + 1] * f_i


def _acquire(
    signal: np.ndarray,
    bias: np.ndarray,
    contrast: dict[str, float],
    acq: _Acquisition,
    rng: np.random.Generator,
    randomize: bool,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Texture, blur, coil bias, ghosting, noise and output scaling."""
    u = lambda lo, hi: _uniform(rng, lo, hi)  # noqa: E731
    n, h, w = signal.shape
    info: dict[str, Any] = {}
    # Tissue heterogeneity (slow) and fine grain (perfusion, flow, partial volume of small vessels).
    slow = _smooth_texture(rng, signal.shape, 12)
    grain = _smooth_texture(rng, signal.shape, 3)
    mid = _smooth_texture(rng, signal.shape, 5)
    tex_amp = u(0.07, 0.12) if not randomize else u(0.0, 0.2)
    img = signal * np.clip(1.0 + tex_amp * slow + 0.6 * tex_amp * mid + 0.4 * tex_amp * grain, 0.2, None)

    # In-plane blur: reconstruction filter, and a coarser acquired matrix along the phase axis.
    phase_dim = 1 if acq.phase_axis == "j" else 2
    read_dim = 3 - phase_dim
    # Widths in mm (an acquired voxel of ~1.4-2 mm), converted to pixels of this grid.
    pixel_mm = 0.5 * (acq.spacing_mm[0] + acq.spacing_mm[1])
    sig = [0.0, 0.0, 0.0]
    sig[read_dim] = (u(0.5, 0.9) if not randomize else u(0.3, 1.8)) / pixel_mm
    sig[phase_dim] = sig[read_dim] + (u(0.2, 0.9) if not randomize else u(0.0, 1.8)) / pixel_mm
    img = ndimage.gaussian_filter(img, sigma=sig, mode="nearest")
    info["blur_sigma_px"] = {"read": sig[read_dim], "phase": sig[phase_dim]}

    # Coil bias: partly corrected by the scanner's intensity normalisation (exponent < 1).
    gamma = u(0.3, 0.7) if not randomize else u(0.3, 1.6)
    img *= np.power(np.maximum(bias, 1e-3), gamma)
    info["bias_exponent"] = gamma

    # Respiratory ghosting: faint shifted, smeared copies along the phase-encoding direction.
    p_ghost, max_ghost = (0.3, 0.05) if not randomize else (0.5, 0.12)
    ghost = 0.0
    if rng.random() < p_ghost:
        ghost = u(0.015, max_ghost)
        period = int(rng.integers(2, 5))
        shift = img.shape[phase_dim] // period
        g = np.roll(img, shift, axis=phase_dim) + np.roll(img, -shift, axis=phase_dim)
        img = img + ghost * ndimage.gaussian_filter1d(g, sigma=2.0, axis=phase_dim)
    info["ghosting"] = ghost

    # Noise: relative to the blood signal. Magnitude images get Rician noise; a PSIR-like image
    # is real-valued (Gaussian noise) around an offset with the nulled tissue at the offset.
    snr_blood = u(10.0, 25.0) if not randomize else _log_uniform(rng, 4.0, 45.0)
    sigma = contrast["blood"] / snr_blood
    psir = randomize and rng.random() < 0.25
    n1 = rng.standard_normal(img.shape, dtype=np.float32) * sigma
    if psir:
        # Phase-sensitive: tissue below the null (long T1: MVO, CSF, nulled myocardium a bit
        # past its null) goes below the offset; air sits at the offset.
        shifted = img - contrast["myo"] * u(0.5, 1.5)
        img = shifted + n1
        offset = u(0.3, 1.0)
        img = img + offset
        info["psir_offset"] = offset
    else:
        n2 = rng.standard_normal(img.shape, dtype=np.float32) * sigma
        img = np.sqrt((img + n1) ** 2 + n2**2)
    info["snr_blood"] = snr_blood
    info["psir_like"] = bool(psir)

    # Black padding at the edges (reconstructed FOV larger than acquired), like many real exports.
    if randomize and rng.random() < 0.3:
        pad = int(rng.integers(2, max(3, h // 10)))
        side = int(rng.integers(4))
        if side == 0:
            img[:, :pad, :] = 0
        elif side == 1:
            img[:, -pad:, :] = 0
        elif side == 2:
            img[:, :, :pad] = 0
        else:
            img[:, :, -pad:] = 0
        info["padding_px"] = pad

    scale = _log_uniform(rng, 300.0, 3000.0)
    img = np.clip(img * scale, 0.0, None).astype(np.float32)
    info["scale"] = scale
    return img, info
