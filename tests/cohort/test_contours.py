import numpy as np
import pytest

from nsclc_engine.cohort.contours import fill_polygon, rasterise_contours


def brute_force_inside(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Ray casting per pixel centre, written independently of the scan-line code."""
    mask = np.zeros(shape, dtype=bool)
    n = len(polygon)
    for row in range(shape[0]):
        for column in range(shape[1]):
            inside = False
            for i in range(n):
                (x0, y0), (x1, y1) = polygon[i], polygon[(i + 1) % n]
                if (y0 > row) != (y1 > row):
                    x_cross = x0 + (row - y0) * (x1 - x0) / (y1 - y0)
                    if column < x_cross:
                        inside = not inside
            mask[row, column] = inside
    return mask


def test_square_covers_the_pixel_centres_inside_it():
    square = np.array([[1.5, 1.5], [5.5, 1.5], [5.5, 4.5], [1.5, 4.5]])
    mask = fill_polygon(square, (8, 8))
    expected = np.zeros((8, 8), dtype=bool)
    expected[2:5, 2:6] = True  # rows 2..4, columns 2..5
    np.testing.assert_array_equal(mask, expected)


def test_right_triangle_by_hand():
    triangle = np.array([[-0.5, -0.5], [4.5, -0.5], [-0.5, 4.5]])
    mask = fill_polygon(triangle, (5, 5))
    # centre (x, y) is inside when x + y < 4
    expected = np.add.outer(np.arange(5), np.arange(5)) < 4
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("seed", range(5))
def test_random_star_polygons_match_ray_casting(seed):
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
    radii = rng.uniform(2, 9, 12)
    polygon = np.stack([10.3 + radii * np.cos(angles), 9.7 + radii * np.sin(angles)], axis=1)
    np.testing.assert_array_equal(
        fill_polygon(polygon, (20, 21)), brute_force_inside(polygon, (20, 21))
    )


def test_polygon_partly_outside_the_image_is_clipped():
    polygon = np.array([[-10.0, -10.0], [2.5, -10.0], [2.5, 1.5], [-10.0, 1.5]])
    mask = fill_polygon(polygon, (4, 4))
    assert mask.sum() == 2 * 3 and mask[:2, :3].all()


def square(x0, y0, x1, y1, z):
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float)


def test_contour_inside_another_in_the_same_plane_is_a_hole():
    outer = square(-0.5, -0.5, 5.5, 5.5, 1.0)
    inner = square(1.5, 1.5, 3.5, 3.5, 1.0)
    result = rasterise_contours([outer, inner], (3, 6, 6))
    assert result.mask[1].sum() == 36 - 4
    assert not result.mask[1, 2:4, 2:4].any()
    assert result.mask[0].sum() == result.mask[2].sum() == 0


def test_planes_between_ct_slices_go_to_the_nearest_slice_and_never_cancel():
    # contours drawn every half slice: planes 1.0 and 1.4 both land on slice 1, 1.6 on slice 2
    first = square(-0.5, -0.5, 2.5, 2.5, 1.0)
    second = square(-0.5, -0.5, 2.5, 2.5, 1.4)
    third = square(-0.5, -0.5, 1.5, 1.5, 1.6)
    result = rasterise_contours([first, second, third], (4, 4, 4))
    assert result.mask[1].sum() == 9  # OR of two identical planes, not XOR (which would be 0)
    assert result.mask[2].sum() == 4
    assert result.n_contours_used == 3


def test_degenerate_and_outside_contours_are_counted_not_drawn():
    line = np.array([[0.0, 0.0, 0.0], [3.0, 3.0, 0.0], [1.0, 1.0, 0.0]])
    two_points = np.array([[0.0, 0.0, 0.0], [3.0, 3.0, 0.0]])
    below = square(0, 0, 3, 3, -0.6)
    above = square(0, 0, 3, 3, 2.6)
    edge = square(-0.5, -0.5, 0.5, 0.5, 2.4)  # within half a slice of the last slice: kept
    result = rasterise_contours([line, two_points, below, above, edge], (3, 4, 4))
    assert (result.n_contours_degenerate, result.n_contours_outside, result.n_contours_used) == (
        2,
        2,
        1,
    )
    assert result.mask.sum() == 1 and result.mask[2, 0, 0]
