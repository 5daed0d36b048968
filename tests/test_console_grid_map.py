"""The grid map draws registry polygons north-up in one SVG, and colours never stand alone."""

from __future__ import annotations

from hub.community.model import Grid
from hub.web.pages.grids import SVG_SIZE, GridTile, scale_polygons


def test_polygons_are_scaled_into_the_svg_north_up() -> None:
    west = Grid(
        code="110105001001001", name="西", polygon=((116.40, 39.91), (116.41, 39.91), (116.41, 39.92))
    )
    east = Grid(
        code="110105001001002", name="东", polygon=((116.41, 39.91), (116.42, 39.91), (116.42, 39.90))
    )
    bare = Grid(code="110105001001003", name="无边界")
    drawn = scale_polygons([west, east, bare])
    assert set(drawn) == {west.code, east.code}, "a grid without a polygon is a tile only"
    points = {code: [tuple(map(float, p.split(","))) for p in text.split()] for code, text in drawn.items()}
    every = [xy for pts in points.values() for xy in pts]
    assert all(0 <= x <= SVG_SIZE and 0 <= y <= SVG_SIZE for x, y in every)
    assert max(x for x, _ in points[west.code]) <= min(x for x, _ in points[east.code]), "west is left"
    # 39.92 (north) is higher on the screen than 39.90 (south): a smaller y.
    assert min(y for _, y in points[west.code]) < max(y for _, y in points[east.code])
    assert scale_polygons([bare]) == {}


def test_a_tile_level_follows_open_cases_and_any_sos() -> None:
    def tile(open_cases: int, sos: int) -> GridTile:
        return GridTile(code="g", name="g", open_cases=open_cases, sos=sos, devices=0, points="")

    assert [tile(0, 0).level, tile(1, 0).level, tile(5, 0).level, tile(1, 1).level] == [0, 1, 2, 2]
