"""The lineage picture's layout lives in `cairn.core.lineage` (the SDK draws the same picture in
notebooks); the dashboard's pages import it from here."""

from cairn.core.lineage import FAN_OUT, NODE_H, NODE_W, GEdge, GNode, Picture, picture, to_svg

__all__ = ["FAN_OUT", "NODE_H", "NODE_W", "GEdge", "GNode", "Picture", "picture", "to_svg"]
